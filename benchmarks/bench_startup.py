"""Start-up cost of each stage, as a ratio against ``python -c "import torch"`` measured in the same run.

Each figure is the median wall time of fresh interpreter processes, the runs of
all commands interleaved (so a change of machine load hits them alike):

* ``import torch`` — the reference;
* ``import <module>`` for the library modules a stage loads before its first record;
* ``semcorr <stage> --help`` for every stage (target: under 0.5 s);
* ``python -c pass`` — the interpreter alone, for scale.

    python benchmarks/bench_startup.py --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

MODULES = {
    "import torch (reference)": "import torch",
    "semcorr.pipeline (extract, correlate, flow)": "import semcorr.pipeline.flow",
    "semcorr.io.stream (every stage's reader/writer)": "import semcorr.io.stream",
    "semcorr.evaluate (evaluate)": "import semcorr.evaluate",
    "semcorr.models (flow --model, refine)": "import semcorr.models",
    "interpreter only": "pass",
}
STAGES = ["extract", "correlate", "refine", "flow", "warp", "evaluate", "train", "inspect", "show", "convert-weights"]


def wall(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    jobs = {name: [sys.executable, "-c", code] for name, code in MODULES.items()}
    jobs.update({f"semcorr {s} --help": [sys.executable, "-m", "semcorr_cli.main", s, "--help"] for s in STAGES})
    times: dict[str, list[float]] = {name: [] for name in jobs}
    load0 = os.getloadavg()[0]
    for _ in range(args.repeats):
        for name, cmd in jobs.items():
            times[name].append(wall(cmd))
    load1 = os.getloadavg()[0]
    ref = statistics.median(times["import torch (reference)"])
    print(f"median of {args.repeats} interleaved runs; load average {load0:.1f} → {load1:.1f} on {os.cpu_count()} cores")
    print(f"{'command':<48} {'s':>7} {'× import torch':>15}")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"{name:<48} {m:7.2f} {m / ref:15.2f}")


if __name__ == "__main__":
    main()
