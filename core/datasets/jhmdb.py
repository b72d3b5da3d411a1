"""JHMDB (Jhuang et al., "Towards Understanding Action Recognition", ICCV 2013) for keypoint propagation.

Published layout under ``root/``:

* ``Rename_Images/<action>/<clip>/00001.png, 00002.png, …``: the frames;
* ``joint_positions/<action>/<clip>/joint_positions.mat``: ``pos_img``
  ``(2, 15, T)``, the 15 puppet joints of every frame in Matlab pixels (the
  first pixel is 1), with ``pos_world``, ``scale``, ``viewpoint``;
* ``splits/<action>_test_split<k>.txt`` (``k`` = 1, 2, 3; also looked for
  under ``JHMDB_splits/``): one line per clip, ``<clip>.avi 1`` (training)
  or ``<clip>.avi 2`` (test).

Every item is a :class:`Clip`: the clip's frames and the joints of each frame
(``(T, 15, 2)``, 0-based with ``coords="one-based"``, the default, as the
propagation evaluation code subtracts 1). A clip has as many frames as both
the folder and ``pos_img`` give. Its category is the action.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, UsageError
from ..parsing import parse_name_list
from .base import ImagePair, PairDataset, PairEntry, apply_coords, check_coords, image_size

JOINTS = (
    "neck", "belly", "face", "right shoulder", "left shoulder", "right hip", "left hip", "right elbow",
    "left elbow", "right knee", "left knee", "right wrist", "left wrist", "right ankle", "left ankle",
)  # fmt: skip
SPLIT_CODES = {"train": "1", "test": "2"}
SPLIT_DIRS = ("splits", "JHMDB_splits")


@dataclass
class Clip:
    """One video with the keypoints of every frame.

    * ``frame_paths`` / ``frame_names``: ``T`` frames, names relative to the root;
    * ``keypoints``: float64 ``(T, N, 2)`` pixel ``(x, y)``, NaN rows where unknown;
    * ``size``: ``(H, W)`` of the frames.

    ``src_name`` and ``trg_name`` (first frame, clip folder) name the clip in results files.
    """

    pair_id: str
    category: str
    frame_paths: list[Path]
    frame_names: list[str]
    keypoints: np.ndarray
    size: tuple[int, int] | None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def src_name(self) -> str:
        return self.frame_names[0]

    @property
    def trg_name(self) -> str:
        return str(Path(self.frame_names[0]).parent)

    def __len__(self) -> int:
        return len(self.frame_paths)

    def frame_pair(self, a: int, b: int) -> ImagePair:
        """Frames ``a`` → ``b`` as a pair for a flow source."""
        return ImagePair(f"{self.pair_id}:{a}-{b}", self.frame_paths[a], self.frame_paths[b], self.frame_names[a], self.frame_names[b])


def read_joint_positions(path: Path, what: str = "pos_img") -> np.ndarray:
    """``joint_positions.mat`` → ``(T, 15, 2)`` float64, as written (1-based pixels)."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(path)
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"jhmdb: '{path}' is not a readable .mat file ({exc})") from None
    if what not in mat:
        raise DataError(f"jhmdb: '{path}' has no '{what}' array")
    pos = np.asarray(mat[what], dtype=np.float64)
    if pos.ndim == 2:
        pos = pos[:, :, None]
    if pos.ndim != 3 or pos.shape[0] != 2:
        raise DataError(f"jhmdb: '{path}' {what} has shape {pos.shape}, expected (2, joints, frames)")
    return np.transpose(pos, (2, 1, 0))


def read_split_file(path: Path) -> dict[str, str]:
    """``<action>_test_split<k>.txt`` → ``{clip: "1" | "2"}`` (``.avi`` dropped)."""
    out = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2 or parts[1] not in ("0", "1", "2"):
            raise DataError(f"jhmdb: split file '{path}' line {lineno} is not '<clip>.avi 1|2'")
        out[parts[0][:-4] if parts[0].endswith(".avi") else parts[0]] = parts[1]
    return out


class JHMDB(PairDataset):
    """JHMDB clips of one split (``test``, default, or ``train``) of split fold ``fold`` (1, default, 2 or 3)."""

    name = "jhmdb"
    task = "propagation"
    source = "JHMDB comes from jhmdb.is.tue.mpg.de (Rename_Images, joint_positions and splits)"

    def check(self, entry: PairEntry, images: bool = True) -> None:
        """Raise :class:`DataError` when a clip cannot be scored: its joints do not read, or
        (``images``) a frame is missing or not an image (headers only; nothing is decoded)."""
        from ..checks import check_image_file

        clip = self.load(entry)
        if images:
            for path in clip.frame_paths:
                check_image_file(path, "frame")

    def __init__(
        self,
        root: str | Path,
        split: str | None = None,
        fold: int | str = 1,
        splits_dir: str | Path | None = None,
        coords: str = "one-based",
        actions: str | list[str] | None = None,
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"jhmdb: root folder '{self.root}' does not exist ({self.source})")
        self.split = split or "test"
        if self.split not in SPLIT_CODES:
            raise UsageError(f"jhmdb splits are train and test, not '{self.split}'")
        try:
            self.fold = int(fold)
        except ValueError:
            raise UsageError(f"jhmdb fold must be 1, 2 or 3, not '{fold}'") from None
        if self.fold not in (1, 2, 3):
            raise UsageError(f"jhmdb fold must be 1, 2 or 3, not {self.fold}")
        self.coords = check_coords(coords)
        for sub in ("Rename_Images", "joint_positions"):
            if not (self.root / sub).is_dir():
                raise self.missing(self.root / sub, "folder")
        self.splits_dir = self._splits_dir(splits_dir)
        files = sorted(self.splits_dir.glob(f"*_test_split{self.fold}.txt"))
        if not files:
            raise self.missing(self.splits_dir / f"<action>_test_split{self.fold}.txt", "split file")
        wanted = parse_name_list(actions, "actions")
        self.entries = []
        for f in files:
            action = f.name[: -len(f"_test_split{self.fold}.txt")]
            if wanted and action not in wanted:
                continue
            for clip, code in sorted(read_split_file(f).items()):
                if code == SPLIT_CODES[self.split]:
                    self.entries.append(PairEntry(f"{action}/{clip}", action, (action, clip)))

    def _splits_dir(self, given: str | Path | None) -> Path:
        if given is not None:
            p = Path(given) if Path(given).is_absolute() else self.root / given
            if not p.is_dir():
                raise DataError(f"jhmdb: split folder '{p}' does not exist")
            return p
        for name in SPLIT_DIRS:
            if (self.root / name).is_dir():
                return self.root / name
        raise self.missing(self.root / SPLIT_DIRS[0], "split folder")

    def describe(self) -> dict:
        return dict(super().describe(), split=self.split, fold=self.fold, coords=self.coords)

    def load(self, entry: PairEntry) -> Clip:
        action, clip = entry.row
        folder = self.root / "Rename_Images" / action / clip
        mat = self.root / "joint_positions" / action / clip / "joint_positions.mat"
        if not folder.is_dir():
            raise self.missing(folder, "frame folder")
        if not mat.is_file():
            raise self.missing(mat, "joint file")
        frames = _frames(folder)
        joints = read_joint_positions(mat)
        joints[~np.isfinite(joints).all(axis=-1)] = np.nan
        n = min(len(frames), len(joints))
        if n < 2:
            raise DataError(f"jhmdb: clip '{entry.pair_id}' has {n} annotated frame(s); propagation needs two")
        frames = frames[:n]
        names = [str(p.relative_to(self.root)) for p in frames]
        return Clip(
            pair_id=entry.pair_id,
            category=action,
            frame_paths=frames,
            frame_names=names,
            keypoints=apply_coords(joints[:n], self.coords),
            size=image_size(frames[0]),
            meta={"frames": n, "coords": self.coords},
        )


__all__ = ["JHMDB", "Clip", "JOINTS", "read_joint_positions", "read_split_file"]


def _frames(folder):
    """A clip's frame files in name order (imported here: ``semcorr.training_data`` imports torch, which a reader must not)."""
    from ..training_data.folder import list_image_files

    return list_image_files(folder)
