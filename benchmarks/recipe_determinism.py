"""Re-run the first steps of a finished training run and compare them with the run's log.

    python benchmarks/recipe_determinism.py runs/default-ncnet [--steps 10]

Reads the command from RUN/run.json, runs it again with ``--iterations STEPS`` into a
temporary directory, and prints the logged training loss of both runs at every logged
step up to STEPS. Identical numbers (to the last digit) mean the re-run follows the same
trajectory: initialisation, data order, augmentation and arithmetic are the same, so the
full recipe ends with the same weights and the same figures. Exit code 1 when they differ.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path


def logged_losses(run: Path, upto: int) -> dict[int, float]:
    out = {}
    for line in (run / "log.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("event") == "step" and rec["step"] <= upto and "loss" in rec:
            out[rec["step"]] = rec["loss"]
    return out


def rerun_command(command: str, steps: int, out: Path) -> list[str]:
    """The run's command with ``--iterations`` and the run directory (``-o``, ``--output`` or the old ``--out``) replaced (``--resume`` dropped)."""
    args = shlex.split(command)
    fixed, skip = [], False
    for i, a in enumerate(args):
        if skip:
            skip = False
            continue
        if a in ("--iterations", "-o", "--output", "--out", "--epochs"):
            skip = True
            continue
        if a in ("--resume", "--overwrite"):
            continue
        fixed.append(a)
    return fixed + ["--iterations", str(steps), "-o", str(out), "-q"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--steps", type=int, default=10)
    a = ap.parse_args()
    command = json.loads((a.run / "run.json").read_text())["command"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rerun"
        cmd = rerun_command(command, a.steps, out)
        subprocess.run(cmd, check=True)
        first, again = logged_losses(a.run, a.steps), logged_losses(out, a.steps)
    if not first:
        print(f"{a.run}: no logged step up to {a.steps}", file=sys.stderr)
        return 1
    same = True
    print(f"{'step':>5}  {'logged loss':>22}  {'re-run loss':>22}")
    for step in sorted(first):
        ok = again.get(step) == first[step]
        same &= ok
        print(f"{step:>5}  {first[step]:>22.17g}  {again.get(step, float('nan')):>22.17g}  {'same' if ok else 'DIFFERENT'}")
    print(f"{a.run}: {'identical' if same else 'different'} over the first {a.steps} steps")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
