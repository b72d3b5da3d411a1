"""PF-WILLOW (Ham et al., "Proposal Flow", CVPR 2016), read from its published layout.

``root/`` holds the pair list ``test_pairs_pf.csv`` (header
``imageA,imageB,XA1..XA10,YA1..YA10,XB1..XB10,YB1..YB10``, 900 pairs) and the
images with their keypoint files, ``PF-dataset/<category>/<name>.png`` and
``<name>.mat`` (``pts_coord``, 2×10). Paths in the CSV are relative to the root.

Keypoints come from the CSV (``keypoints="csv"``, the list the published
evaluation code reads) or from the per-image ``.mat`` files
(``keypoints="mat"``); both hold the same Matlab 1-based values. The dataset
has no object boxes: ``src_bbox``/``trg_bbox`` are the tight boxes around each
image's keypoints (``meta["bbox_from"] = "keypoints"``), the box Proposal Flow
uses for PF-WILLOW's α_bbox.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from ..errors import DataError, UsageError
from .base import (
    KeypointPair,
    PairDataset,
    PairEntry,
    check_coords,
    keypoint_bbox,
    keypoint_pair,
    list_pair_id,
    pad_to_nan,
    points_from_xy,
    resolve_file,
)

from ..csvtable import read_csv

PAIR_LIST = "test_pairs_pf.csv"


def category_of(name: str) -> str:
    """The category of a PF-WILLOW path: its folder, e.g. ``PF-dataset/car(G)/Cars_006a.png`` → ``car(G)``."""
    parts = Path(name).parts
    return parts[-2] if len(parts) >= 2 else "all"


def read_pts_coord(path: Path) -> np.ndarray:
    """A PF-WILLOW ``.mat`` file's ``pts_coord`` (2×N) as ``(N, 2)`` raw (1-based) values."""
    if not path.is_file():
        raise DataError(f"pf-willow: keypoint file '{path}' does not exist")
    try:
        m = scipy.io.loadmat(str(path))
    except Exception as exc:  # noqa: BLE001 - scipy raises many types for bad files
        raise DataError(f"pf-willow: '{path}' is not a readable .mat file ({exc})") from None
    if "pts_coord" not in m:
        raise DataError(f"pf-willow: '{path}' has no 'pts_coord' variable")
    pts = np.asarray(m["pts_coord"], dtype=np.float64)
    if pts.ndim != 2 or pts.shape[0] != 2:
        raise DataError(f"pf-willow: '{path}' pts_coord has shape {pts.shape}, expected (2, N)")
    return pad_to_nan(pts.T)


class PFWillow(PairDataset):
    """PF-WILLOW pairs. ``root``: the folder with ``test_pairs_pf.csv`` and ``PF-dataset/``.

    Options: ``pairs`` (another CSV of the same layout, absolute or relative to
    the root), ``coords`` (``"one-based"`` default, or ``"raw"``),
    ``keypoints`` (``"csv"`` default, or ``"mat"``).
    """

    name = "pf-willow"
    task = "keypoints"
    source = "PF-WILLOW comes from the Proposal Flow project (github.com/bsham/ProposalFlow, folder PF-dataset-WILLOW) with test_pairs_pf.csv from the weakalign/NC-Net repositories"

    def __init__(self, root: str | Path, split: str | None = None, pairs: str | Path | None = None, coords: str = "one-based", keypoints: str = "csv"):
        self.root = Path(root)
        if split not in (None, "test"):
            raise UsageError(f"pf-willow has only a test split, not '{split}'")
        self.coords = check_coords(coords)
        if keypoints not in ("csv", "mat"):
            raise UsageError(f"pf-willow keypoints must come from 'csv' or 'mat', not '{keypoints}'")
        self.keypoints = keypoints
        if not self.root.is_dir():
            raise DataError(f"pf-willow: root folder '{self.root}' does not exist ({self.source})")
        self.pairs_file = resolve_file(self.root, pairs, [PAIR_LIST])
        if self.pairs_file is None or not self.pairs_file.is_file():
            raise self.missing(self.pairs_file or self.root / PAIR_LIST, "pair list")
        self.table = read_csv(self.pairs_file, "pf-willow pair list")
        header = self.table.header
        if len(header) < 6 or header[0] != "imageA" or header[1] != "imageB":
            raise DataError(f"pf-willow: '{self.pairs_file}' does not start with the columns imageA,imageB")
        n = (len(header) - 2) // 4
        if 2 + 4 * n != len(header):
            raise DataError(f"pf-willow: '{self.pairs_file}' has {len(header)} columns, not 2 + 4·N")
        self.n_points = n
        self.entries = []
        for i, row in enumerate(self.table.rows):
            self.table.check_width(row, len(header), exact=True)
            src, trg = row[0], row[1]
            self.entries.append(PairEntry(list_pair_id(i, src, trg), category_of(src), row))

    def describe(self) -> dict:
        return dict(super().describe(), pairs=str(self.pairs_file), coords=self.coords, keypoints=self.keypoints)

    def image_columns(self) -> tuple[int, int]:
        return 0, 1

    def _csv_points(self, row: list[str], first: int, where: str) -> np.ndarray:
        n = self.n_points
        xs = np.array([self.table.number(row, i) for i in range(first, first + n)])
        ys = np.array([self.table.number(row, i) for i in range(first + n, first + 2 * n)])
        return points_from_xy(xs, ys, where)

    def load(self, entry: PairEntry) -> KeypointPair:
        row = entry.row
        where = f"pf-willow pair '{entry.pair_id}'"
        src_name, trg_name = row[0], row[1]
        src_path, trg_path = self.root / src_name, self.root / trg_name
        if self.keypoints == "csv":
            src_raw = self._csv_points(row, 2, where)
            trg_raw = self._csv_points(row, 2 + 2 * self.n_points, where)
        else:
            src_raw = read_pts_coord(src_path.with_suffix(".mat"))
            trg_raw = read_pts_coord(trg_path.with_suffix(".mat"))
        return keypoint_pair(
            entry,
            self.root,
            (src_name, trg_name),
            (src_raw, trg_raw),
            (keypoint_bbox(src_raw), keypoint_bbox(trg_raw)),
            self.coords,
            meta={"bbox_from": "keypoints", "coords": self.coords},
        )


__all__ = ["PFWillow", "read_pts_coord", "category_of"]
