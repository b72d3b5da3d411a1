"""Run every example of README.md and of the commands' ``--help`` as written, on the shared data.

    python benchmarks/run_examples.py            # quick: evaluate on the first 4 pairs, train for 2 steps
    python benchmarks/run_examples.py --full     # exactly as written (evaluate all 450 PF-WILLOW pairs, train full recipes: hours)
    python benchmarks/run_examples.py --list     # only list the examples and why some are skipped

The examples run in a scratch folder laid out as a user's would be: ``a.jpg``, ``b.jpg``
(PF-WILLOW car photos saved as JPEG), ``images/`` and ``pairs.csv`` (a few PF-WILLOW
images and pairs of them), ``points.csv``, and ``../shared/data`` (the shared datasets).
``semcorr`` there is this checkout's. Outputs of one example (``flow.h5``, ``feats.h5``,
``runs/…``) feed later ones; an example that fails because it needs one made later is
run again at the end. In quick mode the ``semcorr`` wrapper adds ``--limit 4`` to an
``evaluate`` without ``--limit``/``--merge`` and caps ``train`` at 2 iterations; nothing
else changes. Examples that need files nobody has here (authors' checkpoints, PF-PASCAL,
SPair-71k, the full TSS) or several GPUs are skipped with the reason.
Exit code 1 when an example fails.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SEMCORR_SHARED_DATA", REPO.parent / "shared" / "data"))
WILLOW = SHARED / "pf-willow-dev" / "PF-dataset" / "car(G)"

#: (pattern, reason): examples that cannot run here.
SKIPS = [
    (r"best_checkpoint\.pt|\.pth\.tar", "needs the authors' released checkpoint, which is not shipped"),
    (r"PF-PASCAL|pf-pascal:|SPair-71k|TSS_CVPR2016", "needs a dataset that is not in ../shared/data (PF-PASCAL, SPair-71k or the full TSS)"),
    (r"\btorchrun\b", "needs several processes or machines (torchrun); tests/test_train_distributed.py covers it on CPU"),
    (r"\bpip install\b|python -m pytest", "installs the package / runs the test suite (CI does)"),
    (
        r"\bxargs\b|\bfind cars\b|target\.png|images/060_|cars\.(csv|h5)|--pairs pairs\.csv --root images",
        "a shell recipe over a folder of your own images (each was tried by hand on PF-WILLOW images)",
    ),
]

WRAPPER = '''#!{python}
"""This checkout's semcorr; in quick mode evaluate gets --limit 4 and train at most 2 iterations."""
import os, sys
sys.path.insert(0, {repo!r})
args = sys.argv[1:]
if os.environ.get("EXAMPLES_QUICK") == "1" and args:
    if args[0] == "evaluate" and "--limit" not in args and "--merge" not in args:
        args += ["--limit", "4"]
    if args[0] == "train":
        if "--iterations" in args:
            i = args.index("--iterations") + 1
            args[i] = str(min(int(args[i]), 2))
        elif "--epochs" not in args:
            args += ["--iterations", "2"]
sys.argv = ["semcorr"] + args
from semcorr_cli.main import main
main()
'''


@dataclass
class Example:
    where: str
    text: str

    @property
    def skip(self) -> str | None:
        for pattern, reason in SKIPS:
            if re.search(pattern, self.text):
                return reason
        return None


def readme_examples(path: Path = REPO / "README.md") -> list[Example]:
    """Commands in README's fenced code blocks (continuation lines joined; comments dropped)."""
    out, block, lines = [], False, path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            block = not block
        elif block and line.strip() and not line.lstrip().startswith("#"):
            text, start = line.strip(), i + 1
            while text.endswith("\\") and i + 1 < len(lines):
                i += 1
                text = text[:-1].rstrip() + " " + lines[i].strip()
            out.append(Example(f"README.md:{start}", text))
        i += 1
    return out


def help_examples() -> list[Example]:
    """The lines after ``Examples:`` in every command's help (and the top-level help), in command order."""
    sys.path.insert(0, str(REPO))
    import importlib

    from semcorr_cli import main as cli

    out = []
    sources = [("semcorr --help", cli.HELP)]
    for name in cli.COMMAND_MODULES:
        mod = importlib.import_module(f"semcorr_cli.{name}")
        sources.append((f"semcorr {name.replace('_cmd', '')} --help", getattr(mod, "HELP", "")))
    for where, text in sources:
        for line in text.splitlines():
            if re.match(r"  (semcorr|torchrun|for) ", line):
                out.append(Example(where, line.strip()))
    return out


def all_examples() -> list[Example]:
    return readme_examples() + help_examples()


def make_sandbox(root: Path, quick: bool) -> tuple[Path, dict[str, str]]:
    """The scratch folder a user would run the examples in; returns it and the environment."""
    from PIL import Image

    work = root / "work"
    (root / "shared").mkdir(parents=True)
    (root / "shared" / "data").symlink_to(SHARED)
    (work / "images").mkdir(parents=True)
    for name, src in (("a.jpg", "Cars_006a.png"), ("b.jpg", "Cars_007a.png")):
        Image.open(WILLOW / src).convert("RGB").save(work / name, quality=95)
    for src in ("Cars_006a.png", "Cars_007a.png", "Cars_008b.png"):
        shutil.copy(WILLOW / src, work / "images" / src)
    (work / "pairs.csv").write_text("source_image,target_image\nCars_006a.png,Cars_007a.png\nCars_007a.png,Cars_008b.png\n")
    (work / "points.csv").write_text("x,y\n100,50\n150,120\n")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "semcorr"
    wrapper.write_text(WRAPPER.format(python=sys.executable, repo=str(REPO)))
    wrapper.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", PYTHONPATH=str(REPO))
    env["EXAMPLES_QUICK"] = "1" if quick else "0"
    return work, env


def run_one(ex: Example, work: Path, env: dict[str, str], timeout: float) -> tuple[int, float, str]:
    t0 = time.monotonic()
    try:
        p = subprocess.run(["bash", "-o", "pipefail", "-c", ex.text], cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
        rc, err = p.returncode, (p.stderr.strip().splitlines() or [""])[-1]
    except subprocess.TimeoutExpired:
        rc, err = 124, f"timed out after {timeout:.0f} s"
    return rc, time.monotonic() - t0, err


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="run exactly as written (hours)")
    ap.add_argument("--list", action="store_true", help="list the examples only")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per example")
    ap.add_argument("--keep", type=Path, default=None, help="use this (new) folder as the sandbox and keep it")
    a = ap.parse_args()
    examples = all_examples()
    if a.list:
        for ex in examples:
            print(f"{'skip' if ex.skip else 'run '}  {ex.where}: {ex.text}" + (f"\n      ({ex.skip})" if ex.skip else ""))
        return 0
    root = a.keep or Path(tempfile.mkdtemp(prefix="semcorr-examples-"))
    work, env = make_sandbox(root, quick=not a.full)
    results: dict[int, tuple[int, float, str]] = {}
    for k, ex in enumerate(examples):
        if ex.skip is None:
            results[k] = run_one(ex, work, env, a.timeout)
            print(f"{'ok  ' if results[k][0] == 0 else 'FAIL'} {results[k][1]:6.1f} s  {ex.where}: {ex.text}", flush=True)
    for k in [k for k, r in results.items() if r[0] != 0]:  # outputs made by later examples now exist
        results[k] = run_one(examples[k], work, env, a.timeout)
        print(f"{'ok  ' if results[k][0] == 0 else 'FAIL'} {results[k][1]:6.1f} s  (again) {examples[k].where}: {examples[k].text}", flush=True)
    failed = [(examples[k], r) for k, r in results.items() if r[0] != 0]
    skipped = [ex for ex in examples if ex.skip]
    print(f"\n{len(results) - len(failed)} of {len(results)} examples ran ({'quick' if not a.full else 'full'} mode); {len(skipped)} skipped:")
    for ex in skipped:
        print(f"  {ex.where}: {ex.text[:90]}\n    {ex.skip}")
    for ex, (rc, _, err) in failed:
        print(f"FAILED (exit {rc}) {ex.where}: {ex.text}\n    {err}")
    if a.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
