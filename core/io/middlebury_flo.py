"""Middlebury ``.flo`` optical-flow files, read and written without extra dependencies.

Layout (little-endian): the float32 magic ``202021.25`` (the bytes ``PIEH``),
int32 width, int32 height, then ``height × width × 2`` float32 values
``u, v`` interleaved row by row. ``u``/``v`` are *displacements*: the pixel
``(x, y)`` of the first image moves to ``(x + u, y + v)`` in the second.
Values of magnitude ``≥ 1e9`` mean "unknown" (the TSS benchmark writes
``1e10`` outside the foreground); :func:`read_flo` turns them into NaN.

semcorr's flows are *absolute* pixel positions in the other image
(:mod:`semcorr.flow`); :func:`displacement_to_absolute` and
:func:`absolute_to_displacement` convert between the two.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from ..files import atomic_write_bytes

FLO_MAGIC = 202021.25
#: Middlebury's threshold for "unknown flow".
UNKNOWN_FLOW_THRESHOLD = 1e9
#: Value written for unknown (NaN) flow, as the Middlebury and TSS tools do.
UNKNOWN_FLOW_VALUE = 1e10
_MAX_SIDE = 100_000


def read_flo(path: str | Path) -> np.ndarray:
    """Read a ``.flo`` file as float32 displacements ``(H, W, 2)``; unknown flow → NaN."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"flow file '{path}' does not exist")
    raw = path.read_bytes()
    if len(raw) < 12:
        raise DataError(f"'{path}' is too short to be a .flo file ({len(raw)} bytes)")
    magic = np.frombuffer(raw, "<f4", 1, 0)[0]
    if magic != np.float32(FLO_MAGIC):
        raise DataError(f"'{path}' is not a Middlebury .flo file (bad magic {magic!r})")
    w, h = (int(v) for v in np.frombuffer(raw, "<i4", 2, 4))
    if not (0 < w <= _MAX_SIDE and 0 < h <= _MAX_SIDE):
        raise DataError(f"'{path}' declares an invalid flow size {w}x{h}")
    expected = 12 + 4 * 2 * w * h
    if len(raw) < expected:
        raise DataError(f"'{path}' is truncated ({len(raw)} of {expected} bytes for {w}x{h})")
    flow = np.frombuffer(raw, "<f4", 2 * w * h, 12).reshape(h, w, 2).astype(np.float32)
    unknown = ~(np.abs(flow) < UNKNOWN_FLOW_THRESHOLD).all(axis=2)
    flow[unknown] = np.nan
    return flow


def _as_flow(flow: np.ndarray) -> np.ndarray:
    """Any array-like → float32 ``(H, W, 2)``; ValueError for another shape."""
    flow = np.asarray(flow, dtype=np.float32)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must be (H, W, 2), got {flow.shape}")
    return flow


def _pixel_grid(h: int, w: int) -> np.ndarray:
    """Every pixel's own ``(x, y)``: float32 ``(h, w, 2)``."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([xs, ys], axis=-1)


def write_flo(path: str | Path, flow: np.ndarray) -> None:
    """Write displacements ``(H, W, 2)`` as a ``.flo`` file (atomically); NaN/inf become ``1e10`` (unknown)."""
    flow = _as_flow(flow)
    h, w = flow.shape[:2]
    out = flow.copy()
    out[~np.isfinite(out).all(axis=2)] = UNKNOWN_FLOW_VALUE
    header = np.array([FLO_MAGIC], "<f4").tobytes() + np.array([w, h], "<i4").tobytes()
    atomic_write_bytes(path, header + out.astype("<f4").tobytes())


def displacement_to_absolute(disp: np.ndarray) -> np.ndarray:
    """Displacements ``(H, W, 2)`` → absolute target pixel ``(x, y)`` ``(H, W, 2)`` (NaN stays NaN)."""
    disp = _as_flow(disp)
    return disp + _pixel_grid(*disp.shape[:2])


def absolute_to_displacement(flow: np.ndarray) -> np.ndarray:
    """Absolute target pixel positions ``(H, W, 2)`` → displacements ``(H, W, 2)``."""
    flow = _as_flow(flow)
    return flow - _pixel_grid(*flow.shape[:2])
