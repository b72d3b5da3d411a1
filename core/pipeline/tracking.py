"""The ``propagate`` stage: keypoints of a first frame carried through a folder of frames.

:func:`propagate_folder` reads the frames (name order) and the first frame's
points, matches frames with a predictor (:func:`~semcorr.pipeline.predictors.build_predictor`)
as :func:`semcorr.propagate.propagate` asks (``first`` or ``chain``), and writes
one ``x,y`` CSV per frame and ``contact_sheet.png``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..csvtable import read_points_csv
from ..training_data.folder import list_image_files
from ..errors import DataError, UsageError, param
from ..files import atomic_write_text
from ..images import load_image
from ..propagate import MODES, propagate
from ..viz import contact_sheet, save_image
from .predictors import build_predictor


@dataclass
class Tracked:
    """What :func:`propagate_folder` did: ``points`` ``(T, N, 2)`` per frame (NaN: lost) and the frames' paths."""

    points: np.ndarray
    frames: list[Path]

    @property
    def kept(self) -> int:
        """How many points are still found in the last frame."""
        return int(np.isfinite(self.points[-1]).all(axis=1).sum())


def propagate_folder(
    frames: Path,
    points: Path,
    out: Path,
    model: str = "nn",
    weights: str | Path | None = "default",
    mode: str = "first",
    size: int | None = None,
    backbone: str | None = None,
    columns: int = 5,
    device: torch.device | str = "cpu",
    on_step: Callable[[int], None] | None = None,
) -> Tracked:
    """Carry the points of CSV ``points`` (first frame) through the image folder ``frames``; write under ``out``.

    ``model``: ``nn``, ``identity`` or a learned model (with ``weights``);
    ``size``/``backbone``: the predictor's (default: its own); ``columns``:
    thumbnails per row of the contact sheet; ``on_step(total)`` is called
    after each of the ``total`` matchings of two frames.
    """
    if mode not in MODES:
        raise UsageError(f"{param('mode')} must be {' or '.join(MODES)}, not '{mode}'")
    if columns < 1:
        raise UsageError(f"{param('columns')} must be at least 1")
    if not frames.is_dir():
        raise DataError(f"frame folder '{frames}' does not exist")
    paths = list_image_files(frames)
    if len(paths) < 2:
        raise DataError(f"'{frames}' holds {len(paths)} image(s); propagation needs at least two frames")
    first = read_points_csv(points)
    images = [load_image(p) for p in paths]
    if any(im.size != images[0].size for im in images):
        raise DataError(f"the frames of '{frames}' are not all {images[0].width}x{images[0].height} pixels")
    opts = {"backbone": backbone, "size": size, "device": device}
    if model not in ("nn", "identity"):
        opts["weights"] = weights
    predictor = build_predictor(model=model, **{k: v for k, v in opts.items() if v is not None})

    def flow_between(a: int, b: int) -> np.ndarray:
        flow = predictor.predict(images[a], images[b])[0]
        if on_step is not None:
            on_step(len(paths) - 1)
        return flow

    tracked = propagate(first, len(paths), flow_between, mode)
    out.mkdir(parents=True, exist_ok=True)
    for path, pts in zip(paths, tracked):
        lines = ["x,y"] + [f"{x:.3f},{y:.3f}" for x, y in pts]
        atomic_write_text(out / f"{path.stem}.csv", "\n".join(lines) + "\n")
    save_image(contact_sheet(images, tracked, columns=columns, labels=[p.name for p in paths]), out / "contact_sheet.png", "PNG")
    return Tracked(np.asarray(tracked), list(paths))
