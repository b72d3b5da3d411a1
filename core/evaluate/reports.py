"""A run's report files, chosen by extension (``.json``, ``.csv``, ``.png``) and written together, atomically.

Every report is rendered in memory first, then all are written through
:func:`semcorr.files.atomic_outputs`: an error or Ctrl-C while writing leaves no
partial or temporary file, and the files that were there before stay as they were.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ..files import atomic_outputs, write_bytes_durably
from .engine import EvaluationRun
from .export import csv_report, json_report
from .plot import plot_png

#: Report kinds by file extension.
REPORT_KINDS = {".json": "json", ".csv": "csv", ".png": "plot"}

RENDERERS: dict[str, Callable[[EvaluationRun], bytes]] = {
    "json": lambda run: json_report(run).encode("utf-8"),
    "csv": lambda run: csv_report(run).encode("utf-8"),
    "plot": plot_png,
}


def report_kind(path: str | Path) -> str | None:
    """``"json"``, ``"csv"`` or ``"plot"`` for a report file's extension; None for any other."""
    return REPORT_KINDS.get(Path(path).suffix.lower())


def write_reports(run: EvaluationRun, files: Sequence[tuple[str, str | Path]]) -> None:
    """Write ``[(kind, path), ...]`` (kinds of :data:`REPORT_KINDS`): all of them, or — on any error — none."""
    payloads = [RENDERERS[kind](run) for kind, _ in files]  # a report that cannot be made stops before any file
    with atomic_outputs(path for _, path in files) as temporaries:
        for tmp, data in zip(temporaries, payloads):
            write_bytes_durably(tmp, data)


__all__ = ["REPORT_KINDS", "report_kind", "write_reports"]
