"""The run directory: what a run writes there, and when an existing one may be reused.

Files (all written by rank 0 only, each atomically):

* ``run.json`` — the run's identity (model, data, seed, hyper-parameters…);
* ``resume.safetensors`` — the resumable state (:mod:`semcorr.train.state`);
* ``last.safetensors`` + ``last.json`` — the latest weights and sidecar;
* ``best.safetensors`` + ``best.json`` — the best validation's weights (with ``--val``);
* ``log.jsonl`` — one JSON object per logged event;
* ``tensorboard/`` — with ``--tensorboard``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ..errors import DataError, UsageError, param
from ..files import atomic_write_text, is_temporary_of

RUN_FILE = "run.json"
STATE_FILE = "resume.safetensors"
LOG_FILE = "log.jsonl"
OWN_FILES = (
    RUN_FILE,
    STATE_FILE,
    LOG_FILE,
    "last.safetensors",
    "last.json",
    "best.safetensors",
    "best.json",
)
OWN_DIRS = ("tensorboard",)
#: Keys of run.json that may change when a run is resumed (the rest must match).
RESUMABLE_CHANGES = ("epochs", "iterations", "created", "command", "semcorr", "workers")
RUN_FORMAT = "semcorr-train-run"


def identity_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Keys whose values differ between two run records (ignoring :data:`RESUMABLE_CHANGES`)."""
    keys = (set(old) | set(new)) - set(RESUMABLE_CHANGES)
    diffs = []
    for k in sorted(keys):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += [f"{k}.{d}" for d in identity_differences(a, b)]
        elif a != b:
            diffs.append(k)
    return diffs


def read_run_record(out: Path) -> dict[str, Any] | None:
    """``run.json`` of ``out``, or None when there is none."""
    path = out / RUN_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DataError(f"'{path}' is not valid JSON; is '{out}' a semcorr run directory?") from None
    if not isinstance(record, dict) or record.get("format") != RUN_FORMAT:
        raise DataError(f"'{path}' is not a semcorr training run record")
    return record


def is_own_temporary(name: str) -> bool:
    """A temporary file left by an atomic write of one of the run's files (a killed process)."""
    return any(is_temporary_of(name, own) for own in OWN_FILES)


def remove_stale_temporaries(out: Path) -> None:
    for p in out.iterdir():
        if p.is_file() and is_own_temporary(p.name):
            p.unlink(missing_ok=True)


def remove_run_files(out: Path) -> None:
    """Delete the files a run writes (and nothing else)."""
    for name in OWN_FILES:
        (out / name).unlink(missing_ok=True)
    remove_stale_temporaries(out)
    for name in OWN_DIRS:
        if (out / name).is_dir():
            shutil.rmtree(out / name)


def prepare_run_dir(out: Path, record: dict[str, Any], resume: bool, overwrite: bool) -> bool:
    """Check ``out`` against the requested run and set it up; True when there is a state to resume.

    * empty or missing: a fresh run;
    * holding a run: ``--resume`` continues it when the identity matches,
      ``--overwrite`` deletes it; otherwise refused;
    * holding other files and no run: refused unless ``--overwrite``.
    """
    if resume and overwrite:
        raise UsageError(f"{param('resume')} and {param('overwrite')} contradict each other; choose one")
    if out.exists() and not out.is_dir():
        raise UsageError(f"the run directory '{out}' is a file")
    old = read_run_record(out) if out.is_dir() else None
    others = (
        [p.name for p in out.iterdir() if p.name not in OWN_FILES + OWN_DIRS and not is_own_temporary(p.name)]
        if out.is_dir()
        else []
    )
    if old is not None:
        if overwrite:
            remove_run_files(out)
        elif resume:
            diffs = identity_differences(old, record)
            if diffs:
                raise UsageError(
                    f"'{out}' holds a different run ({', '.join(diffs[:4])} differ); "
                    f"resume it with the same options, or use {param('overwrite')} or another {param('output')}"
                )
        else:
            raise UsageError(
                f"'{out}' already holds a run of {old.get('model')} on {old.get('data')}; "
                f"use {param('resume')} to continue it, {param('overwrite')} to replace it, or another {param('output')}"
            )
    elif out.is_dir() and any(out.iterdir()) and not overwrite:
        shown = ", ".join(sorted(others)[:3] or sorted(p.name for p in out.iterdir())[:3])
        raise UsageError(f"'{out}' is not empty ({shown}…) and holds no semcorr run; use an empty {param('output')} or {param('overwrite')}")
    elif overwrite and out.is_dir():
        remove_run_files(out)
    out.mkdir(parents=True, exist_ok=True)
    can_resume = resume and old is not None and (out / STATE_FILE).is_file()
    if not can_resume:
        remove_run_files(out)  # e.g. a run killed before its first checkpoint: start it afresh
    remove_stale_temporaries(out)
    record = dict(record)
    if can_resume and old is not None:
        record["created"] = old.get("created", record.get("created"))
    atomic_write_text(out / RUN_FILE, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return can_resume
