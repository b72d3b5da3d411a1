"""Per-pair results files (JSON lines): written as the run goes, resumed, merged.

Line 1 is a header ``{"semcorr_results": 1, "dataset": {...}, "protocol": {...},
"source": {...}, "selection": {"limit": …, "shard": [i, n]}, "pairs_total": …}``;
every further line is one pair: ``{"index": …, "pair_id": …, "category": …,
"src": …, "trg": …, "meta": {...}, <scoring fields>}`` (:mod:`.scoring`).
Each line is flushed when written, so an interrupted run loses at most the pair
being written; :func:`read_results` drops a truncated last line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import DataError, UsageError, param
from ..files import atomic_output

RESULTS_VERSION = 1


def make_header(dataset: dict[str, Any], protocol: dict[str, Any], source: dict[str, Any], selection: dict[str, Any], pairs_total: int) -> dict[str, Any]:
    return {
        "semcorr_results": RESULTS_VERSION,
        "dataset": dataset,
        "protocol": protocol,
        "source": source,
        "selection": selection,
        "pairs_total": pairs_total,
    }


def _dataset_identity(d: dict[str, Any]) -> dict[str, Any]:
    """The dataset description without its location, so a run moved to another machine still matches."""
    return {k: v for k, v in d.items() if k not in ("root", "pairs")}


def read_results(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]], bool]:
    """``(header, pair records, unterminated)`` of a results file.

    ``unterminated``: the file does not end with a newline (a run was cut off
    while writing); its last line is kept when it is complete JSON and dropped
    otherwise, and the file must be rewritten before more lines are appended.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"results file '{path}' does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"'{path}' is not a semcorr results file (not UTF-8 text)") from None
    unterminated = not text.endswith("\n")
    lines = text.split("\n")
    if not unterminated:
        lines.pop()
    records: list[dict[str, Any]] = []
    header: dict[str, Any] | None = None
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1 and unterminated:
                break
            raise DataError(f"results file '{path}' line {i + 1} is not JSON") from None
        if header is None:
            if not isinstance(obj, dict) or obj.get("semcorr_results") is None:
                raise DataError(f"'{path}' is not a semcorr results file (no header line)")
            if int(obj["semcorr_results"]) > RESULTS_VERSION:
                raise DataError(f"'{path}' was written by a newer semcorr (results version {obj['semcorr_results']})")
            header = obj
        else:
            records.append(obj)
    if header is None:
        raise DataError(f"results file '{path}' has no header line")
    return header, records, unterminated


def check_compatible(a: dict[str, Any], b: dict[str, Any], what: str) -> None:
    """Refuse to resume/merge results made with another dataset, protocol or flow source."""
    if _dataset_identity(a["dataset"]) != _dataset_identity(b["dataset"]):
        raise UsageError(f"{what} was made on another dataset ({a['dataset'].get('dataset')} vs {b['dataset'].get('dataset')}, or other options)")
    if a["protocol"] != b["protocol"]:
        diff = sorted(k for k in set(a["protocol"]) | set(b["protocol"]) if a["protocol"].get(k) != b["protocol"].get(k))
        raise UsageError(f"{what} was made with another protocol (differs in: {', '.join(diff)})")
    if a.get("source") != b.get("source"):
        raise UsageError(f"{what} was made with other flows (model or flows file: {a.get('source')} vs {b.get('source')})")


class ResultsWriter:
    """Append pair records to a results file, one flushed line each.

    A new file gets ``header``. With ``resume``, an existing file is checked
    against ``header`` (same dataset and protocol, same selection), a
    truncated last line is dropped, and :attr:`done` holds the records already
    there. Without ``resume`` an existing file is refused.
    """

    def __init__(self, path: str | Path, header: dict[str, Any], resume: bool = False):
        self.path = Path(path)
        self.header = header
        self.done: dict[int, dict[str, Any]] = {}
        if self.path.exists():
            if not resume:
                raise UsageError(f"results file '{self.path}' exists; pass {param('resume')} to continue it, or remove it")
            old, records, unterminated = read_results(self.path)
            check_compatible(old, header, f"'{self.path}'")
            if old.get("selection") != header.get("selection"):
                raise UsageError(f"'{self.path}' was made with another selection ({old.get('selection')}); use the same {param('limit')}/{param('shard')}")
            self.done = {int(r["index"]): r for r in records}
            if unterminated:
                self._rewrite(old, records)
            self._fh = open(self.path, "a", encoding="utf-8")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "w", encoding="utf-8")
            self.write(header)

    def _rewrite(self, header: dict[str, Any], records: list[dict[str, Any]]) -> None:
        with atomic_output(self.path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            for obj in [header, *records]:
                fh.write(json.dumps(obj, allow_nan=False) + "\n")

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record, allow_nan=False) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def merge_results(paths: list[str | Path]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Combine results files of one dataset and protocol (e.g. shards) into ``(header, records)``.

    Records are ordered by pair index; a pair present in several files must
    carry the same figures. The merged header's ``selection`` lists the inputs
    and its ``coverage`` says whether they make a whole run (see :func:`coverage`).
    """
    if not paths:
        raise UsageError(f"{param('merge')} needs at least one results file")
    header: dict[str, Any] | None = None
    by_index: dict[int, dict[str, Any]] = {}
    parts: list[tuple[str, dict[str, Any], int]] = []
    for p in paths:
        h, records, _ = read_results(p)
        if header is None:
            header = h
        else:
            check_compatible(header, h, f"'{p}'")
        parts.append((str(p), h, len(records)))
        for r in records:
            i = int(r["index"])
            if i in by_index and by_index[i] != r:
                raise DataError(f"pair {i} ('{r.get('pair_id')}') has different results in two of the merged files")
            by_index[i] = r
    assert header is not None
    merged = dict(header, selection={"merged": [str(p) for p in paths]}, coverage=coverage(parts))
    return merged, [by_index[i] for i in sorted(by_index)]


def coverage(parts: list[tuple[str, dict[str, Any], int]]) -> dict[str, Any]:
    """Whether results files ``(name, header, pairs in it)`` make a whole run.

    ``{"complete": bool, "missing_shards": ["2/4", …], "incomplete": [{"file", "pairs", "of"}]}``:
    shards ``i/n`` not among the files (unless one file holds an unsharded
    run), and files holding fewer pairs than their selection (a run cut off).
    """
    shards = [tuple(h["selection"]["shard"]) for _, h, _ in parts if (h.get("selection") or {}).get("shard")]
    whole = len(shards) < len(parts)
    counts = sorted({n for _, n in shards})
    if len(counts) > 1:
        raise UsageError(f"the files are shards of different splits ({', '.join(f'…/{n}' for n in counts)}); merge shards of one split")
    missing = [] if whole or not counts else [f"{i}/{counts[0]}" for i in range(1, counts[0] + 1) if (i, counts[0]) not in shards]
    incomplete = [{"file": name, "pairs": k, "of": int(h["pairs_total"])} for name, h, k in parts if k < int(h.get("pairs_total") or 0)]
    return {"complete": not missing and not incomplete, "missing_shards": missing, "incomplete": incomplete}


def coverage_problem(cov: dict[str, Any]) -> str:
    """One sentence on what a merge lacks (empty when it is complete)."""
    gaps = []
    if cov.get("missing_shards"):
        gaps.append(f"shard{'s' if len(cov['missing_shards']) > 1 else ''} {', '.join(cov['missing_shards'])} missing")
    for part in cov.get("incomplete", []):
        gaps.append(f"'{part['file']}' holding {part['pairs']} of its {part['of']} pairs")
    return "; ".join(gaps)


__all__ = [
    "make_header", "read_results", "ResultsWriter", "merge_results", "coverage", "coverage_problem", "check_compatible",
    "RESULTS_VERSION",
]  # fmt: skip
