"""SPair-71k (Min et al., "SPair-71k: A Large-scale Benchmark for Semantic Correspondence", 2019).

Published layout under ``root/``:

* ``Layout/{large,small}/{trn,val,test}.txt``: one pair name a line,
  ``<id>-<src>-<trg>:<category>`` (copies that replaced ``:`` by ``_`` are accepted);
* ``PairAnnotation/{trn,val,test}/<name>.json``: ``src_imname``, ``trg_imname``,
  ``src_imsize``/``trg_imsize`` (``[W, H, depth]``), ``src_bndbox``/``trg_bndbox``
  (x1, y1, x2, y2), ``src_kps``/``trg_kps`` (the keypoints visible in both,
  ``[[x, y], …]``), ``kps_ids``, ``mirror``, ``viewpoint_variation``,
  ``scale_variation``, ``truncation``, ``occlusion``, …;
* ``ImageAnnotation/<category>/<image>.json`` and ``JPEGImages/<category>/<image>.jpg``.

Coordinates are used as written (``coords="raw"``, the HPF/SPair evaluation
code's reading); ``coords="one-based"`` subtracts 1. The difficulty factors go
to ``meta`` (and :data:`semcorr.metrics.SPAIR_FACTORS` names their levels).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ..errors import DataError, UsageError
from .base import KeypointPair, PairDataset, PairEntry, apply_coords, apply_coords_bbox, check_coords, pad_to_nan

SPLIT_ALIASES = {"trn": "trn", "train": "trn", "val": "val", "validation": "val", "test": "test"}
LAYOUTS = ("large", "small")
FACTOR_FIELDS = ("viewpoint_variation", "scale_variation", "truncation", "occlusion")
_NAME = re.compile(r"^(?P<id>\d+)-(?P<pair>.+)[:_](?P<category>[A-Za-z]+)$")


def parse_pair_name(line: str) -> tuple[str, str]:
    """A Layout line → (canonical name with ``:``, category)."""
    m = _NAME.match(line.strip())
    if m is None:
        raise DataError(f"spair: '{line.strip()}' is not a pair name of the form <id>-<src>-<trg>:<category>")
    return f"{m['id']}-{m['pair']}:{m['category']}", m["category"]


def _points(value, where: str) -> np.ndarray:
    try:
        arr = np.array([[np.nan, np.nan] if p is None else p for p in value], dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{where}: keypoints are not a list of [x, y]") from None
    return pad_to_nan(arr.reshape(-1, 2))


def _imsize(value, where: str) -> tuple[int, int]:
    if not isinstance(value, (list, tuple)) or len(value) < 2:
        raise DataError(f"{where}: image size {value!r} is not [W, H, depth]")
    return int(value[1]), int(value[0])


class SPair71k(PairDataset):
    """SPair-71k pairs. ``split``: ``trn``/``val``/``test`` (default test); ``layout``: ``large`` (default) or ``small``."""

    name = "spair"
    task = "keypoints"
    source = "SPair-71k comes from cvlab.postech.ac.kr/research/SPair (SPair-71k.tar.gz)"

    def __init__(self, root: str | Path, split: str | None = None, layout: str = "large", coords: str = "raw"):
        self.root = Path(root)
        split = split or "test"
        if split not in SPLIT_ALIASES:
            raise UsageError(f"spair split must be trn, val or test, not '{split}'")
        self.split = SPLIT_ALIASES[split]
        if layout not in LAYOUTS:
            raise UsageError(f"spair layout must be large or small, not '{layout}'")
        self.layout = layout
        self.coords = check_coords(coords)
        if not self.root.is_dir():
            raise DataError(f"spair: root folder '{self.root}' does not exist ({self.source})")
        self.list_file = self.root / "Layout" / layout / f"{self.split}.txt"
        if not self.list_file.is_file():
            raise self.missing(self.list_file, "pair list")
        self.ann_dir = self.root / "PairAnnotation" / self.split
        if not self.ann_dir.is_dir():
            raise self.missing(self.ann_dir, "annotation folder")
        self.entries = []
        for line in self.list_file.read_text(encoding="utf-8").splitlines():
            if line.strip():
                name, category = parse_pair_name(line)
                self.entries.append(PairEntry(name, category, line.strip()))

    def describe(self) -> dict:
        return dict(super().describe(), split=self.split, layout=self.layout, coords=self.coords)

    def annotation_file(self, entry: PairEntry) -> Path:
        """The pair's JSON file, named with ``:`` as published or ``_`` as in some copies."""
        for name in (entry.pair_id, entry.row, entry.pair_id.replace(":", "_")):
            p = self.ann_dir / f"{name}.json"
            if p.is_file():
                return p
        raise self.missing(self.ann_dir / f"{entry.pair_id}.json", "pair annotation")

    def load(self, entry: PairEntry) -> KeypointPair:
        path = self.annotation_file(entry)
        where = f"spair annotation '{path}'"
        try:
            ann = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{where} is not valid JSON ({exc})") from None
        missing = [k for k in ("src_imname", "trg_imname", "src_kps", "trg_kps", "category") if k not in ann]
        if missing:
            raise DataError(f"{where} lacks the field '{missing[0]}'")
        category = ann["category"]
        src_name = f"JPEGImages/{category}/{ann['src_imname']}"
        trg_name = f"JPEGImages/{category}/{ann['trg_imname']}"
        meta = {k: ann[k] for k in FACTOR_FIELDS + ("mirror", "kps_ids", "src_pose", "trg_pose") if k in ann}
        meta["coords"] = self.coords
        return KeypointPair(
            pair_id=entry.pair_id,
            src_path=self.root / src_name,
            trg_path=self.root / trg_name,
            src_name=src_name,
            trg_name=trg_name,
            src_kps=apply_coords(_points(ann["src_kps"], where), self.coords),
            trg_kps=apply_coords(_points(ann["trg_kps"], where), self.coords),
            category=category,
            src_bbox=apply_coords_bbox(ann.get("src_bndbox"), self.coords),
            trg_bbox=apply_coords_bbox(ann.get("trg_bndbox"), self.coords),
            src_size=_imsize(ann["src_imsize"], where) if "src_imsize" in ann else None,
            trg_size=_imsize(ann["trg_imsize"], where) if "trg_imsize" in ann else None,
            meta=meta,
        )


__all__ = ["SPair71k", "parse_pair_name", "FACTOR_FIELDS"]
