"""Your own keypoint pairs: a plain CSV, so any image collection can be scored.

Columns (a header row is required; names are case-insensitive):

* ``source_image``, ``target_image`` — paths relative to the root (or absolute);
* ``XA``, ``YA``, ``XB``, ``YB`` — ``;``-separated keypoint coordinates, point
  ``i`` of the source matching point ``i`` of the target; empty, ``nan`` or
  ``-1`` for a point not visible;
* optional ``category`` (default ``all``), ``source_bbox`` and ``target_bbox``
  (``x1;y1;x2;y2``, for α_bbox).

Coordinates are 0-based pixel centres (``coords="raw"``, default) or Matlab
1-based (``coords="one-based"``). The CSV is ``root/pairs.csv`` unless
``pairs`` names another.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from .base import (
    KeypointPair,
    PairDataset,
    PairEntry,
    check_coords,
    check_same_count,
    keypoint_pair,
    list_pair_id,
    points_from_xy,
    resolve_file,
)

from ..csvtable import read_csv

COLUMNS = {
    "src": ("source_image", "source image", "imageA"),
    "trg": ("target_image", "target image", "imageB"),
    "xa": ("XA", "source_x"),
    "ya": ("YA", "source_y"),
    "xb": ("XB", "target_x"),
    "yb": ("YB", "target_y"),
}


def _values(text: str, where: str) -> np.ndarray:
    """``"1;nan;;3"`` → ``[1, nan, nan, 3]`` (an empty entry is a missing point)."""
    text = (text or "").strip()
    if not text:
        return np.zeros(0)
    try:
        return np.array([float(v) if v.strip() else np.nan for v in text.split(";")], dtype=np.float64)
    except ValueError:
        raise DataError(f"{where}: '{text[:60]}' is not a ';'-separated list of numbers") from None


class CustomPairs(PairDataset):
    """Keypoint pairs from a user CSV (see the module doc)."""

    name = "custom"
    task = "keypoints"
    source = "a custom dataset is a CSV with source_image,target_image,XA,YA,XB,YB[,category] (see docs/protocols.md)"

    def __init__(self, root: str | Path, split: str | None = None, pairs: str | Path | None = None, coords: str = "raw"):
        self.root = Path(root)
        self.coords = check_coords(coords)
        if not self.root.is_dir():
            raise DataError(f"custom: root folder '{self.root}' does not exist")
        self.pairs_file = resolve_file(self.root, pairs, ["pairs.csv"])
        if self.pairs_file is None or not self.pairs_file.is_file():
            raise self.missing(self.pairs_file or self.root / "pairs.csv", "pair list")
        self.table = table = read_csv(self.pairs_file, "custom pair list")
        self.col = {k: table.require_column(v) for k, v in COLUMNS.items()}
        self.col["category"] = table.column(("category", "class"))
        self.col["src_bbox"] = table.column(("source_bbox",))
        self.col["trg_bbox"] = table.column(("target_bbox",))
        self.entries = []
        for i, row in enumerate(table.rows):  # a short row is a bad pair, refused when it is checked or loaded
            c = self.col["category"]
            category = row[c] if c is not None and c < len(row) and row[c] else "all"
            src, trg = (table.cell(row, self.col[k]) if self.col[k] < len(row) else "" for k in ("src", "trg"))
            self.entries.append(PairEntry(list_pair_id(i, src, trg), category, row))

    def describe(self) -> dict:
        return dict(super().describe(), pairs=str(self.pairs_file), coords=self.coords)

    def image_columns(self) -> tuple[int, int]:
        return self.col["src"], self.col["trg"]

    def _numbers(self, row: list[str], key: str) -> np.ndarray:
        """The ``;``-separated values of column ``key`` (errors name the file, row and column)."""
        i = self.col[key]
        return _values(self.table.cell(row, i, required=False), self.table.where(row, i))

    def _bbox(self, row: list[str], key: str) -> np.ndarray | None:
        """The ``(4,)`` box in column ``key`` as written (dataset coordinates), or None."""
        c = self.col[key]
        if c is None or c >= len(row) or not row[c]:
            return None
        v = self._numbers(row, key)
        if len(v) != 4:
            raise self.table.error(row, c, f"a box needs 4 values x1;y1;x2;y2, got {len(v)}")
        return v

    def load(self, entry: PairEntry) -> KeypointPair:
        row = entry.row
        names = self.table.cell(row, self.col["src"]), self.table.cell(row, self.col["trg"])
        where = f"custom pair '{entry.pair_id}' of '{self.pairs_file}'"
        src_raw = points_from_xy(self._numbers(row, "xa"), self._numbers(row, "ya"), where)
        trg_raw = points_from_xy(self._numbers(row, "xb"), self._numbers(row, "yb"), where)
        check_same_count(src_raw, trg_raw, where)
        return keypoint_pair(
            entry,
            self.root,
            names,
            (src_raw, trg_raw),
            (self._bbox(row, "src_bbox"), self._bbox(row, "trg_bbox")),
            self.coords,
            meta={"coords": self.coords},
        )


__all__ = ["CustomPairs"]
