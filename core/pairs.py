"""Pair lists: the ``--pairs`` CSV of ``extract`` (``source_image,target_image``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .csvtable import read_csv
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


def pairs_root(path: str | Path, root: str | Path | None = None) -> Path:
    """The folder relative paths of pair list ``path`` are resolved against: ``root``, else the CSV's folder."""
    return Path(root) if root is not None else Path(path).parent


def read_pairs_csv(path: str | Path, root: str | Path | None = None) -> list[ImagePair]:
    """Read a pair list; relative paths are resolved against ``root`` (default: the CSV's folder).

    Read with :func:`core.csvtable.read_csv`; raises :class:`DataError` naming the
    file, row and column of a malformed line.
    """
    path = Path(path)
    base = pairs_root(path, root)
    table = read_csv(path, "pair list")
    si = table.require_column(SOURCE_COLUMNS)
    ti = table.require_column(TARGET_COLUMNS)
    pairs = []
    for row in table.rows:
        s, t = table.cell(row, si), table.cell(row, ti)
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
