"""What every benchmark reader shares: the pair records, the pair-list base class, small parsers.

Coordinates are semcorr's pixel convention (:mod:`semcorr.geometry`): ``(x, y)``,
0-based, pixel centres at integer coordinates. Annotation files made with
Matlab (PF-WILLOW, PF-PASCAL, Caltech-101) count pixels from 1; a reader's
``coords`` option says how to read them:

* ``"one-based"`` — subtract 1 from every coordinate (the Matlab centre of
  the first pixel, 1, becomes 0). The geometrically right reading, and the
  one the NC-Net/DCCNet code implies: their ``normalize_axis(x, L) =
  (x − 1 − (L − 1)/2) · 2/(L − 1)`` maps the CSV value 1 to the first pixel.
* ``"raw"`` — use the values as written (SFNet's code reads them directly as
  0-based positions, clamping ``x = W`` to ``W − 1``).

Invisible keypoints are NaN rows; ``-1`` padding in the lists becomes NaN.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..checks import BadRow, check_image_file
from ..errors import DataError, UsageError
from ..images import image_file_size

COORDS = ("one-based", "raw")

#: The 20 PASCAL VOC classes in their official order (PF-PASCAL's class ids 1..20).
PASCAL_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


@dataclass
class KeypointPair:
    """One annotated image pair of a keypoint benchmark.

    * ``src_kps`` / ``trg_kps``: float64 ``(N, 2)`` pixel ``(x, y)`` in the
      original images, row ``i`` of one matching row ``i`` of the other; NaN
      rows for invisible or padded points;
    * ``src_bbox`` / ``trg_bbox``: ``(4,)`` ``x1, y1, x2, y2`` or None;
    * ``src_size`` / ``trg_size``: ``(H, W)`` of the original images, or None
      when the image is not there to be measured;
    * ``src_name`` / ``trg_name``: the paths as written in the pair list (how
      precomputed flow records name the images).
    """

    pair_id: str
    src_path: Path
    trg_path: Path
    src_name: str
    trg_name: str
    src_kps: np.ndarray
    trg_kps: np.ndarray
    category: str
    src_bbox: np.ndarray | None = None
    trg_bbox: np.ndarray | None = None
    src_size: tuple[int, int] | None = None
    trg_size: tuple[int, int] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("src_kps", "trg_kps"):
            arr = np.asarray(getattr(self, name), dtype=np.float64).reshape(-1, 2)
            setattr(self, name, arr)
        if self.src_kps.shape != self.trg_kps.shape:
            raise DataError(
                f"pair '{self.pair_id}' has {len(self.src_kps)} source and {len(self.trg_kps)} target keypoints"
            )
        for name in ("src_bbox", "trg_bbox"):
            v = getattr(self, name)
            if v is not None:
                setattr(self, name, np.asarray(v, dtype=np.float64).reshape(4))


@dataclass
class FlowPair:
    """One pair of a dense-flow benchmark (TSS).

    * ``flow_src_to_trg``: float32 ``(H_src, W_src, 2)`` absolute pixel
      ``(x, y)`` in the target for every source pixel, NaN where unknown;
    * ``flow_trg_to_src``: ``(H_trg, W_trg, 2)`` likewise;
    * ``src_mask`` / ``trg_mask``: bool ``(H, W)`` foreground;
    * ``flip``: the pair's objects face opposite ways (TSS ``flip_gt.txt``).
    """

    pair_id: str
    src_path: Path
    trg_path: Path
    src_name: str
    trg_name: str
    category: str
    flow_src_to_trg: np.ndarray
    flow_trg_to_src: np.ndarray
    src_mask: np.ndarray
    trg_mask: np.ndarray
    flip: bool
    src_size: tuple[int, int]
    trg_size: tuple[int, int]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class MaskPair:
    """One pair of a mask-transfer benchmark (Caltech-101).

    * ``src_polygon`` / ``trg_polygon``: float64 ``(K, 2)`` pixel ``(x, y)`` vertices;
    * ``src_mask`` / ``trg_mask``: bool ``(H, W)`` rasterised polygons.
    """

    pair_id: str
    src_path: Path
    trg_path: Path
    src_name: str
    trg_name: str
    category: str
    src_polygon: np.ndarray
    trg_polygon: np.ndarray
    src_mask: np.ndarray
    trg_mask: np.ndarray
    src_size: tuple[int, int]
    trg_size: tuple[int, int]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImagePair:
    """Two images to match and nothing else: what a flow source needs (paths, names as written, no mirroring)."""

    pair_id: str
    src_path: Path
    trg_path: Path
    src_name: str
    trg_name: str
    flip: bool = False


@dataclass(frozen=True)
class PairEntry:
    """What a reader knows of a pair without opening any file: its id, category and list row."""

    pair_id: str
    category: str
    row: Any


class PairDataset(ABC):
    """A benchmark's pair list. Subclasses fill ``self.entries`` and implement ``load(entry)``.

    ``dataset[i]`` loads pair ``i`` (annotations, and whatever it needs to
    read); ``dataset.entries[i]`` is the cheap description used to skip,
    shard and resume without loading.
    """

    name: ClassVar[str] = "base"
    #: ``"keypoints"`` (KeypointPair), ``"flow"`` (FlowPair), ``"mask"`` (MaskPair) or
    #: ``"propagation"`` (:class:`~.jhmdb.Clip`).
    task: ClassVar[str] = "keypoints"
    #: Every task a protocol may score on this dataset (``task`` first).
    tasks: ClassVar[tuple[str, ...]] = ()
    #: Where the dataset is normally obtained (quoted in errors about a wrong root).
    source: ClassVar[str] = ""

    root: Path
    entries: list[PairEntry]

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int):
        n = len(self.entries)
        if not -n <= index < n:
            raise IndexError(f"pair index {index} out of range for {n} pairs")
        return self.load(self.entries[index])

    def __iter__(self) -> Iterator:
        for i in range(len(self)):
            yield self[i]

    @abstractmethod
    def load(self, entry: PairEntry):
        """Read one pair's annotations into its record (KeypointPair, FlowPair or MaskPair)."""

    @property
    def categories(self) -> list[str]:
        """The categories present in this pair list, sorted."""
        return sorted({e.category for e in self.entries})

    def describe(self) -> dict[str, Any]:
        """Identity of the pair list, stored in results files (dataset, root, options)."""
        return {"dataset": self.name, "root": str(self.root), "n_pairs": len(self)}

    def missing(self, path: Path, what: str) -> DataError:
        """The error for a file the dataset should contain."""
        return DataError(f"{self.name}: {what} '{path}' does not exist; is the root right? ({self.source})")

    # ------------------------------------------------------------------ checks before any work

    def image_columns(self) -> tuple[int, int] | None:
        """For a list read from a CSV (``self.table``): the columns of the source and target image names."""
        return None

    def where(self, entry: PairEntry) -> str:
        """Where a pair is written: ``'FILE' row N`` for a CSV list, else ``NAME pair 'ID'``."""
        table = getattr(self, "table", None)
        number = getattr(entry.row, "number", None)
        if table is not None and number is not None:
            return f"'{table.path}' row {number}"
        return f"{self.name} pair '{entry.pair_id}'"

    def locate(self, entry: PairEntry, message: str) -> str:
        """``message`` about ``entry``, starting with :meth:`where` (unless it already does)."""
        where = self.where(entry)
        return message if message.startswith(where) else f"{where}: {message}"

    def check(self, entry: PairEntry, images: bool = True) -> None:
        """Raise :class:`DataError` when a pair cannot be scored: its annotations do not read, or
        (``images``) an image is missing or not an image (its header is read, nothing is decoded)."""
        pair = self.load(entry)
        if not images:
            return
        columns = self.image_columns()
        for k, path in enumerate((pair.src_path, pair.trg_path)):
            try:
                check_image_file(path)
            except DataError as exc:
                if columns is None:
                    raise
                raise self.table.error(entry.row, columns[k], str(exc)) from None

    def bad_pairs(self, indices: Sequence[int], images: bool = True) -> list[BadRow]:
        """The pairs among ``indices`` that :meth:`check` refuses, each named by :meth:`where`."""
        bad = []
        for i in indices:
            entry = self.entries[i]
            try:
                self.check(entry, images)
            except DataError as exc:
                bad.append(BadRow(i, self.locate(entry, str(exc))))
        return bad


# ----------------------------------------------------------------------------- small helpers


def check_coords(coords: str) -> str:
    if coords not in COORDS:
        raise UsageError(f"coords must be one of {', '.join(COORDS)}, not '{coords}'")
    return coords


def apply_coords(points: np.ndarray, coords: str) -> np.ndarray:
    """Dataset coordinates ``(..., 2)`` → semcorr's 0-based pixels (see the module doc)."""
    return points - 1.0 if check_coords(coords) == "one-based" else points


def apply_coords_bbox(bbox: np.ndarray | None, coords: str) -> np.ndarray | None:
    """``(4,)`` box ``x1, y1, x2, y2`` read with ``coords`` (None stays None)."""
    if bbox is None:
        return None
    return apply_coords(np.asarray(bbox, dtype=np.float64).reshape(2, 2), coords).reshape(4)


def parse_number_list(text: str, sep: str, where: str) -> np.ndarray:
    """``"1.5;2;-1"`` → float64 ``(n,)``; an empty field gives ``(0,)``."""
    text = (text or "").strip()
    if not text:
        return np.zeros(0, dtype=np.float64)
    try:
        return np.array([float(v) for v in text.split(sep) if v.strip() != ""], dtype=np.float64)
    except ValueError:
        raise DataError(f"{where}: '{text[:60]}' is not a '{sep}'-separated list of numbers") from None


def points_from_xy(xs: np.ndarray, ys: np.ndarray, where: str) -> np.ndarray:
    """Two coordinate lists → ``(N, 2)``; a point with a ``-1`` coordinate (padding) becomes NaN."""
    if xs.shape != ys.shape:
        raise DataError(f"{where}: {len(xs)} x values but {len(ys)} y values")
    pts = np.stack([xs, ys], axis=-1).astype(np.float64).reshape(-1, 2)
    return pad_to_nan(pts)


def pad_to_nan(points: np.ndarray) -> np.ndarray:
    """``(N, 2)`` → the same with NaN rows for missing points: ``-1`` padding in either coordinate
    (as the NC-Net code tests it) and rows with any non-finite coordinate."""
    pts = np.array(points, dtype=np.float64).reshape(-1, 2)
    pts[(pts == -1).any(axis=1) | ~np.isfinite(pts).all(axis=1)] = np.nan
    return pts


def keypoint_bbox(points: np.ndarray) -> np.ndarray | None:
    """Tight box ``(4,)`` around the finite rows of ``(N, 2)``; None when there is none."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    pts = pts[np.isfinite(pts).all(axis=1)]
    if len(pts) == 0:
        return None
    return np.concatenate([pts.min(axis=0), pts.max(axis=0)])


def list_pair_id(index: int, src_name: str, trg_name: str) -> str:
    """The id of row ``index`` of a pair list: ``"0007:<source stem>-<target stem>"``."""
    return f"{index:04d}:{Path(src_name).stem}-{Path(trg_name).stem}"


def check_same_count(src_raw: np.ndarray, trg_raw: np.ndarray, where: str) -> None:
    """Raise DataError unless the ``(N, 2)`` source and ``(M, 2)`` target keypoints have ``N == M``."""
    if src_raw.shape != trg_raw.shape:
        raise DataError(f"{where}: {len(src_raw)} source but {len(trg_raw)} target keypoints")


def keypoint_pair(
    entry: PairEntry,
    root: Path,
    names: tuple[str, str],
    raw_kps: tuple[np.ndarray, np.ndarray],
    raw_bboxes: tuple[np.ndarray | None, np.ndarray | None],
    coords: str,
    meta: dict[str, Any],
) -> KeypointPair:
    """One pair-list row, read as the dataset writes it, → its KeypointPair.

    ``names``: source and target image paths as written, relative to ``root``;
    ``raw_kps``: ``(N, 2)`` source and target keypoints and ``raw_bboxes``:
    ``(4,)`` boxes or None, all in the dataset's coordinates, converted here
    with ``coords``; the image sizes are read from the headers.
    """
    src_name, trg_name = names
    src_path, trg_path = root / src_name, root / trg_name
    return KeypointPair(
        pair_id=entry.pair_id,
        src_path=src_path,
        trg_path=trg_path,
        src_name=src_name,
        trg_name=trg_name,
        src_kps=apply_coords(raw_kps[0], coords),
        trg_kps=apply_coords(raw_kps[1], coords),
        category=entry.category,
        src_bbox=apply_coords_bbox(raw_bboxes[0], coords),
        trg_bbox=apply_coords_bbox(raw_bboxes[1], coords),
        src_size=image_size(src_path),
        trg_size=image_size(trg_path),
        meta=meta,
    )


def image_size(path: Path) -> tuple[int, int] | None:
    """``(H, W)`` of the upright image, read from the header (no decoding); None when the file is absent."""
    if not path.is_file():
        return None
    return image_file_size(path)


def resolve_file(root: Path, given: str | Path | None, candidates: Sequence[str]) -> Path | None:
    """``given`` (absolute, or relative to ``root``/the working directory), else the first candidate under ``root`` that exists."""
    if given is not None:
        p = Path(given)
        if p.is_absolute() or (root / p).exists() or not p.exists():
            return p if p.is_absolute() else root / p
        return p
    for c in candidates:
        if (root / c).is_file():
            return root / c
    return None
