"""Keypoint propagation through a sequence of frames by pairwise correspondence.

The first frame's points ``(N, 2)`` are carried to every later frame with the
dense flows of a correspondence method, in one of two ways:

* ``first``: frame ``t``'s points are the first frame's points moved with the
  flow *first frame → frame t* (every frame matched to the annotated one, so
  errors do not accumulate, but motion grows with ``t``);
* ``chain``: frame ``t``'s points are frame ``t − 1``'s *predicted* points
  moved with the flow *frame t − 1 → frame t* (small motions, drift accumulates).

Flows are semcorr's absolute pixel flows (:mod:`semcorr.flow`): ``(H, W, 2)``
defined on the frame the points are in.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .errors import UsageError
from .warp import points_through_flow

MODES = ("first", "chain")


def carry_points(points: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Move points ``(N, 2)`` of a frame with a flow ``(H, W, 2)`` defined on it → ``(N, 2)`` in the other frame.

    The flow is read bilinearly at the point. A point outside the frame moves
    with the flow of the nearest frame pixel and keeps its offset from that
    pixel (so the no-motion flow leaves every point exactly where it is). NaN
    points stay NaN; a NaN flow gives NaN.
    """
    flow = np.asarray(flow, dtype=np.float64)
    h, w = flow.shape[:2]
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    finite = np.isfinite(pts).all(axis=1)
    q = np.where(finite[:, None], pts, 0.0)
    clamped = np.stack([np.clip(q[:, 0], 0, w - 1), np.clip(q[:, 1], 0, h - 1)], axis=1)
    moved = points_through_flow(torch.from_numpy(clamped), torch.from_numpy(flow)).numpy() + (q - clamped)
    moved[~finite] = np.nan
    return moved


def propagate(
    points: np.ndarray,
    n_frames: int,
    flow_between: Callable[[int, int], np.ndarray],
    mode: str = "first",
) -> np.ndarray:
    """The points of frame 0 ``(N, 2)`` in every frame: ``(n_frames, N, 2)`` (row 0 = ``points``).

    ``flow_between(a, b)`` returns the flow ``(H, W, 2)`` defined on frame
    ``a`` into frame ``b``; ``mode`` is ``first`` or ``chain`` (module doc).
    """
    if mode not in MODES:
        raise UsageError(f"propagation must be {' or '.join(MODES)}, not '{mode}'")
    if n_frames < 1:
        raise UsageError("propagation needs at least one frame")
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    out = np.empty((n_frames, len(pts), 2), dtype=np.float64)
    out[0] = pts
    for t in range(1, n_frames):
        if mode == "first":
            out[t] = carry_points(pts, flow_between(0, t))
        else:
            out[t] = carry_points(out[t - 1], flow_between(t - 1, t))
    return out


__all__ = ["MODES", "carry_points", "propagate"]
