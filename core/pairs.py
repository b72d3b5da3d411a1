"""Pair lists: the ``--pairs`` CSV of ``extract`` (``source_image,target_image``)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError

#: Accepted header names for the two image columns, in order of preference.
SOURCE_COLUMNS = ("source_image", "imageA", "source image", "src", "source")
TARGET_COLUMNS = ("target_image", "imageB", "target image", "trg", "target")


@dataclass(frozen=True)
class ImagePair:
    """One row of a pair list: the paths as written, and resolved against the root."""

    pair_id: str
    src_name: str
    trg_name: str
    src_path: Path
    trg_path: Path


def _column(header: list[str], names: tuple[str, ...], path: Path) -> int:
    lowered = [h.strip().lower() for h in header]
    for name in names:
        if name.lower() in lowered:
            return lowered.index(name.lower())
    raise DataError(f"'{path}' has no '{names[0]}' column (header: {', '.join(header)})")


def pairs_root(path: str | Path, root: str | Path | None = None) -> Path:
    """The folder relative paths of pair list ``path`` are resolved against: ``root``, else the CSV's folder."""
    return Path(root) if root is not None else Path(path).parent


def read_pairs_csv(path: str | Path, root: str | Path | None = None) -> list[ImagePair]:
    """Read a pair list; relative paths are resolved against ``root`` (default: the CSV's folder).

    Raises :class:`DataError` naming the row for a malformed line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"pair list '{path}' does not exist")
    base = pairs_root(path, root)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"'{path}' is not a readable CSV file ({exc})") from None
    if not rows:
        raise DataError(f"pair list '{path}' is empty")
    header = rows[0]
    si = _column(header, SOURCE_COLUMNS, path)
    ti = _column(header, TARGET_COLUMNS, path)
    pairs = []
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) <= max(si, ti) or not row[si].strip() or not row[ti].strip():
            raise DataError(f"'{path}' row {lineno} is malformed: expected source and target image paths")
        s, t = row[si].strip(), row[ti].strip()
        pairs.append(
            ImagePair(
                pair_id=f"{len(pairs):06d}",
                src_name=s,
                trg_name=t,
                src_path=Path(s) if Path(s).is_absolute() else base / s,
                trg_path=Path(t) if Path(t).is_absolute() else base / t,
            )
        )
    if not pairs:
        raise DataError(f"pair list '{path}' has no pairs")
    return pairs
