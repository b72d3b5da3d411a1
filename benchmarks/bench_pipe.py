"""The 3-stage pipe against the same work in one process (issue 18).

    python benchmarks/bench_pipe.py [--pairs 20] [--size 400] [--repeats 2]

Route "pipe": ``semcorr extract --pairs P | semcorr correlate | semcorr flow -o pipe.h5``,
three processes. Route "in-process": one Python process that imports the library and runs
the same stages (:func:`semcorr.pipeline.extract_pairs` → ``correlate_records`` →
``flow_records``) on the same pairs into ``inproc.h5``. Both include their start-up. The
routes alternate (pipe, in-process, pipe, …), so a change of machine load hits both; the
script prints each run, the medians, seconds per pair, the ratio pipe / in-process (the
issue's target: ≤ 1.3 for 20 pairs) and the load average before and after. The two outputs
are compared: the flows agree to float precision (threads change the order of sums).

The pairs are same-class image pairs from the Caltech-101 subset in ``../shared/data`` (not a
test set); set ``SEMCORR_SHARED_DATA`` to read them elsewhere.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SEMCORR_SHARED_DATA", REPO.parent / "shared" / "data"))
CALTECH = DATA / "caltech-101-subset" / "101_ObjectCategories"

IN_PROCESS = """
import sys
from semcorr.io.pair_list import read_pair_list
from semcorr.io.stream import RecordWriter
from semcorr.pipeline import build_extractor, correlate_records, extract_pairs, flow_records
pairs_csv, size, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
listing = read_pair_list(pairs_csv)
extractor = build_extractor(size=size)
records = flow_records(correlate_records(extract_pairs(extractor, listing.pairs, listing=listing), center=True))
with RecordWriter(out, "bench_pipe in-process") as writer:
    for rec in records:
        writer.write(rec)
"""


def write_pairs(n: int, path: Path) -> None:
    """``n`` pairs of two different images of one class, classes in sorted order."""
    rows = []
    for folder in sorted(p for p in CALTECH.iterdir() if p.is_dir()):
        images = sorted(folder.glob("*.jpg"))
        if len(images) >= 2:
            rows.append((str(images[0]), str(images[1])))
        if len(rows) == n:
            break
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["source_image", "target_image"])
        w.writerows(rows)


def run_pipe(pairs: Path, size: int, out: Path) -> float:
    cli = [sys.executable, "-m", "semcorr_cli.main"]
    t0 = time.perf_counter()
    extract = subprocess.Popen(cli + ["extract", "--pairs", str(pairs), "--size", str(size), "-q"], stdout=subprocess.PIPE)
    correlate = subprocess.Popen(cli + ["correlate", "-q"], stdin=extract.stdout, stdout=subprocess.PIPE)
    extract.stdout.close()
    flow = subprocess.Popen(cli + ["flow", "-q", "-o", str(out)], stdin=correlate.stdout)
    correlate.stdout.close()
    codes = [p.wait() for p in (flow, correlate, extract)]
    if any(codes):
        raise SystemExit(f"the pipe failed: exit codes {codes}")
    return time.perf_counter() - t0


def run_in_process(pairs: Path, size: int, out: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", IN_PROCESS, str(pairs), str(size), str(out)], check=True)
    return time.perf_counter() - t0


def flow_difference(a: Path, b: Path) -> tuple[int, float]:
    """Number of flow datasets compared, and their largest absolute difference in pixels.

    The routes may differ in the last float digits: a stage in a pipe runs with its share
    of the cores' threads (semcorr_cli.common.pipe_thread_count), which changes the order
    of float sums.
    """
    import h5py
    import numpy as np

    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        names: list[str] = []
        fa.visit(lambda n: names.append(n) if isinstance(fa[n], h5py.Dataset) and "/flow/" in f"/{n}" else None)
        worst = max((float(np.nanmax(np.abs(fa[n][()] - fb[n][()]))) for n in names), default=float("nan"))
        return len(names), worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--size", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pairs = tmp / "pairs.csv"
        write_pairs(args.pairs, pairs)
        load0 = os.getloadavg()[0]
        times: dict[str, list[float]] = {"pipe": [], "in-process": []}
        for r in range(args.repeats):
            times["pipe"].append(run_pipe(pairs, args.size, tmp / "pipe.h5"))
            times["in-process"].append(run_in_process(pairs, args.size, tmp / "inproc.h5"))
            print(f"run {r + 1}: pipe {times['pipe'][-1]:.1f} s, in-process {times['in-process'][-1]:.1f} s", flush=True)
        load1 = os.getloadavg()[0]
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"\n{args.pairs} pairs at {args.size} px, median of {args.repeats}; load average {load0:.1f} → {load1:.1f} on {os.cpu_count()} cores")
        print("| route | s | s/pair | × in-process |")
        print("| --- | --- | --- | --- |")
        for k in ("in-process", "pipe"):
            print(f"| {k} | {med[k]:.1f} | {med[k] / args.pairs:.2f} | {med[k] / med['in-process']:.2f} |")
        n, worst = flow_difference(tmp / "pipe.h5", tmp / "inproc.h5")
        print(f"flows of the two outputs: {n} datasets, largest difference {worst:.2g} px")


if __name__ == "__main__":
    main()
