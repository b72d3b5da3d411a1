"""PF-PASCAL (Ham et al., "Proposal Flow: Semantic Correspondences from Object Proposals", TPAMI 2018).

Published layout, under ``root/`` (the folder the lists' paths are relative to):

* ``PF-dataset-PASCAL/JPEGImages/<image>.jpg``;
* ``PF-dataset-PASCAL/Annotations/<class>/<image>.mat`` — ``kps`` (N×2, NaN
  for invisible points, Matlab 1-based) and ``bbox`` (x1, y1, x2, y2);
* a pair list, one of the widely used CSVs:

  - NC-Net/weakalign ``image_pairs/{train,val,test}_pairs.csv``: with
    keypoints ``source_image,target_image,class,XA,YA,XB,YB`` (``;``-separated
    lists of varying length, class 1–20) or, for training, ``flip`` instead;
  - DCCNet ``val_pairs.csv`` (same columns, with keypoints);
  - SFNet ``bbox_{val,test}_pairs_pf_pascal.csv``: ``source image,target image,
    class,source_x,source_y,target_x,target_y,source_L_pck,target_L_pck,
    "source bbox(x1,y1,x2,y2)","target_bbox(x1,y1,x2,y2)"``.

``pair_list`` picks which list is looked for (``ncnet``, ``sfnet``,
``dccnet``, ``weakalign``) under ``lists`` (default: the root; the layout of
``shared/data/pf-pascal-splits`` is recognised too); ``pairs`` names a CSV
directly. Keypoints come from the list when it has them, else from the
``Annotations`` files (train lists). Boxes come from the SFNet list when it has
them, else from the annotation file when present. The ``flip`` column of the
training lists is kept in ``meta["flip"]`` and not applied.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from ..errors import DataError, UsageError
from .base import (
    PASCAL_CLASSES,
    KeypointPair,
    PairDataset,
    PairEntry,
    check_coords,
    check_same_count,
    keypoint_pair,
    list_pair_id,
    pad_to_nan,
    parse_number_list,
    points_from_xy,
    resolve_file,
)

from ..csvtable import read_csv

SPLITS = ("train", "val", "test")
PAIR_LISTS = {
    "ncnet": ("image_pairs/{split}_pairs.csv", "ncnet_image_pairs/{split}_pairs.csv", "{split}_pairs.csv"),
    "sfnet": (
        "bbox_{split}_pairs_pf_pascal.csv",
        "image_pairs/bbox_{split}_pairs_pf_pascal.csv",
        "sfnet_bbox_csv/bbox_{split}_pairs_pf_pascal.csv",
    ),
    "dccnet": ("dccnet_image_pairs/{split}_pairs.csv", "image_pairs/{split}_pairs.csv", "{split}_pairs.csv"),
    "weakalign": ("weakalign_pf-pascal-flip/{split}_pairs.csv", "image_pairs/{split}_pairs.csv", "{split}_pairs.csv"),
}


def class_name(value: str, where: str) -> tuple[str, int | None]:
    """A class field (``1``..``20`` or a PASCAL name) → (name, id or None)."""
    v = value.strip()
    try:
        k = int(float(v))
    except ValueError:
        k = None
    if k is not None:
        if not 1 <= k <= len(PASCAL_CLASSES):
            raise DataError(f"{where}: class {k} is outside 1..20")
        return PASCAL_CLASSES[k - 1], k
    if v in PASCAL_CLASSES:
        return v, PASCAL_CLASSES.index(v) + 1
    raise DataError(f"{where}: '{v}' is not a PASCAL class")


def annotation_path(root: Path, image_name: str, category: str) -> Path:
    """``PF-dataset-PASCAL/JPEGImages/x.jpg`` → ``root/PF-dataset-PASCAL/Annotations/<category>/x.mat``."""
    p = Path(image_name)
    base = p.parent.parent if p.parent.name == "JPEGImages" else p.parent
    return root / base / "Annotations" / category / (p.stem + ".mat")


def read_annotation(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """A PF-PASCAL annotation file → (raw ``kps`` ``(N, 2)`` with NaN, raw ``bbox`` ``(4,)`` or None)."""
    if not path.is_file():
        raise DataError(f"pf-pascal: annotation file '{path}' does not exist")
    try:
        m = scipy.io.loadmat(str(path))
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"pf-pascal: '{path}' is not a readable .mat file ({exc})") from None
    if "kps" not in m:
        raise DataError(f"pf-pascal: '{path}' has no 'kps' variable")
    kps = np.asarray(m["kps"], dtype=np.float64)
    if kps.ndim != 2 or 2 not in kps.shape:
        raise DataError(f"pf-pascal: '{path}' kps has shape {kps.shape}, expected (N, 2)")
    if kps.shape[1] != 2:
        kps = kps.T
    bbox = None
    if "bbox" in m and np.asarray(m["bbox"]).size >= 4:
        bbox = np.asarray(m["bbox"], dtype=np.float64).reshape(-1)[:4]
    return pad_to_nan(kps), bbox


class PFPascal(PairDataset):
    """PF-PASCAL pairs (see the module doc for the layout and options)."""

    name = "pf-pascal"
    task = "keypoints"
    source = "PF-PASCAL comes from the Proposal Flow project (www.di.ens.fr/willow/research/proposalflow, PF-dataset-PASCAL) with the pair lists of NC-Net/weakalign (ignacio-rocco/ncnet), DCCNet or SFNet"

    def __init__(
        self,
        root: str | Path,
        split: str | None = None,
        pairs: str | Path | None = None,
        pair_list: str = "ncnet",
        lists: str | Path | None = None,
        coords: str = "one-based",
    ):
        self.root = Path(root)
        self.split = split or "test"
        if self.split not in SPLITS:
            raise UsageError(f"pf-pascal split must be one of {', '.join(SPLITS)}, not '{self.split}'")
        if pair_list not in PAIR_LISTS:
            raise UsageError(f"pf-pascal pair_list must be one of {', '.join(PAIR_LISTS)}, not '{pair_list}'")
        self.pair_list = pair_list
        self.coords = check_coords(coords)
        if not self.root.is_dir():
            raise DataError(f"pf-pascal: root folder '{self.root}' does not exist ({self.source})")
        lists_dir = Path(lists) if lists is not None else self.root
        candidates = [c.format(split=self.split) for c in PAIR_LISTS[pair_list]]
        self.pairs_file = resolve_file(lists_dir, pairs, candidates)
        if self.pairs_file is None or not self.pairs_file.is_file():
            raise self.missing(self.pairs_file or lists_dir / candidates[0], f"{pair_list} {self.split} pair list")
        self.table = read_csv(self.pairs_file, "pf-pascal pair list")
        header = self.table.header
        self._columns(header)
        self.entries = []
        for i, row in enumerate(self.table.rows):
            self.table.check_width(row, len(header))
            category, _ = class_name(row[self.col["class"]], self.table.where(row, self.col["class"]))
            src, trg = row[self.col["src"]], row[self.col["trg"]]
            self.entries.append(PairEntry(list_pair_id(i, src, trg), category, row))

    def _columns(self, header: list[str]) -> None:
        names = {
            "src": ("source_image", "source image"),
            "trg": ("target_image", "target image"),
            "class": ("class",),
            "xa": ("XA", "source_x"),
            "ya": ("YA", "source_y"),
            "xb": ("XB", "target_x"),
            "yb": ("YB", "target_y"),
            "flip": ("flip",),
            "src_l": ("source_L_pck",),
            "trg_l": ("target_L_pck",),
        }
        self.col = {k: self.table.column(v) for k, v in names.items()}
        for i, h in enumerate(header):
            low = h.lower().replace("_", " ")
            if low.startswith("source bbox"):
                self.col["src_bbox"] = i
            elif low.startswith("target bbox"):
                self.col["trg_bbox"] = i
        for k in ("src", "trg", "class"):
            if self.col[k] is None:
                raise DataError(f"pf-pascal: '{self.pairs_file}' has no {names[k][0]} column (header: {','.join(header)})")
        self.has_kps = all(self.col[k] is not None for k in ("xa", "ya", "xb", "yb"))

    def describe(self) -> dict:
        return dict(super().describe(), split=self.split, pairs=str(self.pairs_file), pair_list=self.pair_list, coords=self.coords)

    def image_columns(self) -> tuple[int, int]:
        return self.col["src"], self.col["trg"]

    def _numbers(self, row: list[str], key: str) -> np.ndarray:
        """The ``;``-separated numbers of column ``key`` (errors name the file, row and column)."""
        i = self.col[key]
        return parse_number_list(row[i], ";", self.table.where(row, i))

    def _list_points(self, row: list[str], kx: str, ky: str, where: str) -> np.ndarray:
        return points_from_xy(self._numbers(row, kx), self._numbers(row, ky), where)

    def load(self, entry: PairEntry) -> KeypointPair:
        row = entry.row
        where = f"pf-pascal pair '{entry.pair_id}'"
        src_name, trg_name = row[self.col["src"]], row[self.col["trg"]]
        category = entry.category
        src_ann, trg_ann = annotation_path(self.root, src_name, category), annotation_path(self.root, trg_name, category)
        ann_bbox: dict[str, np.ndarray | None] = {"src": None, "trg": None}
        if self.has_kps:
            src_raw = self._list_points(row, "xa", "ya", where)
            trg_raw = self._list_points(row, "xb", "yb", where)
            for side, p in (("src", src_ann), ("trg", trg_ann)):
                if p.is_file() and "src_bbox" not in self.col:
                    ann_bbox[side] = read_annotation(p)[1]
        else:
            src_raw, ann_bbox["src"] = read_annotation(src_ann)
            trg_raw, ann_bbox["trg"] = read_annotation(trg_ann)
        check_same_count(src_raw, trg_raw, where)
        boxes = {}
        for side in ("src", "trg"):
            raw = self._numbers(row, f"{side}_bbox") if self.col.get(f"{side}_bbox") is not None else ann_bbox[side]
            if raw is not None and len(raw) != 4:
                raise DataError(f"{where}: a bounding box needs 4 values, got {len(raw)}")
            boxes[side] = raw
        meta: dict = {"class_id": PASCAL_CLASSES.index(category) + 1, "coords": self.coords}
        if self.col.get("flip") is not None:
            meta["flip"] = bool(int(self.table.number(row, self.col["flip"])))
        for side in ("src", "trg"):
            if self.col.get(f"{side}_l") is not None:
                meta[f"{side}_L_pck"] = self.table.number(row, self.col[f"{side}_l"])
        return keypoint_pair(
            entry, self.root, (src_name, trg_name), (src_raw, trg_raw), (boxes["src"], boxes["trg"]), self.coords, meta
        )


__all__ = ["PFPascal", "read_annotation", "annotation_path", "class_name", "PAIR_LISTS"]
