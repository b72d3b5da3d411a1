"""Peak memory of each stage of a streamed pipe, for growing batch sizes.

    python benchmarks/bench_stream_memory.py [--sizes 2,5,20] [--size 400]

Runs ``extract --pairs | correlate | flow -o out.h5`` on the first N pairs of the
PF-WILLOW development list and prints each process's peak resident memory
(ru_maxrss from wait4) and the wall time. With streaming, peak memory must not
grow with N.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WILLOW = Path(os.environ.get("SEMCORR_SHARED_DATA", REPO.parent / "shared" / "data")) / "pf-willow-dev"


def run_pipe(n: int, size: int, workdir: Path) -> tuple[list[float], float]:
    pairs = workdir / f"pairs{n}.csv"
    with open(WILLOW / "test_pairs_pf.csv") as fh, open(pairs, "w", newline="") as out:
        rows = list(csv.reader(fh))[1 : n + 1]
        w = csv.writer(out)
        w.writerow(["source_image", "target_image"])
        w.writerows([r[0], r[1]] for r in rows)
    cli = [sys.executable, "-m", "semcorr_cli.main"]
    stages = [
        cli + ["extract", "--pairs", str(pairs), "--root", str(WILLOW), "--size", str(size), "-q"],
        cli + ["correlate", "-q"],
        cli + ["flow", "-q", "-o", str(workdir / f"out{n}.h5")],
    ]
    t0 = time.time()
    procs = []
    prev = None
    for i, cmd in enumerate(stages):
        p = subprocess.Popen(cmd, stdin=prev.stdout if prev else subprocess.DEVNULL, stdout=subprocess.PIPE if i < len(stages) - 1 else subprocess.DEVNULL)
        if prev:
            prev.stdout.close()
        procs.append(p)
        prev = p
    peaks = []
    for p in procs:
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            raise SystemExit(f"stage {p.args[3]} failed with exit code {p.returncode}")
        peaks.append(usage.ru_maxrss / 1024.0)  # KiB → MiB on Linux
    return peaks, time.time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="2,5,20")
    ap.add_argument("--size", type=int, default=400)
    args = ap.parse_args()
    ns = [int(x) for x in args.sizes.split(",")]
    print(f"{'pairs':>5} | {'extract MiB':>11} | {'correlate MiB':>13} | {'flow MiB':>8} | {'wall s':>6} | {'s/pair':>6}")
    print("-" * 66)
    with tempfile.TemporaryDirectory() as tmp:
        for n in ns:
            peaks, wall = run_pipe(n, args.size, Path(tmp))
            print(f"{n:>5} | {peaks[0]:>11.0f} | {peaks[1]:>13.0f} | {peaks[2]:>8.0f} | {wall:>6.1f} | {wall / n:>6.2f}")


if __name__ == "__main__":
    main()
