"""Loading images and keypoints at the training size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..images import image_to_float, load_image


def load_resized(path: str | Path, size: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
    """Read an image as float ``(3, H, W)`` in [0, 1] at ``size = (H, W)`` (PIL bilinear).

    Returns the tensor and the original ``(h, w)``.
    """
    img = load_image(path)
    orig = (img.size[1], img.size[0])
    if img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.BILINEAR)
    return image_to_float(img)[0], orig


def scale_keypoints(kps: np.ndarray | torch.Tensor, orig_size: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """Pixel ``(x, y)`` ``(N, 2)`` of an image of ``orig_size = (h, w)`` → the same points after resizing to ``size``.

    Uses the resampling convention of the resize (pixel ``i`` covers
    ``[i - 0.5, i + 0.5]``): ``x' = (x + 0.5) * W / w - 0.5``. NaN stays NaN.
    """
    pts = torch.as_tensor(np.asarray(kps, dtype=np.float64)).reshape(-1, 2)
    oh, ow = orig_size
    h, w = size
    scale = torch.tensor([w / ow, h / oh], dtype=torch.float64)
    return ((pts + 0.5) * scale - 0.5).to(torch.float32)


def scale_box(box, orig_size: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """``(x0, y0, x1, y1)`` pixel box → the same box after resizing; ``None`` → NaN ``(4,)``."""
    if box is None:
        return torch.full((4,), float("nan"))
    pts = scale_keypoints(np.asarray(box, dtype=np.float64).reshape(2, 2), orig_size, size)
    return pts.reshape(4)


def flip_keypoints(kps: torch.Tensor, width: int) -> torch.Tensor:
    """Horizontal mirror of pixel ``(x, y)`` ``(N, 2)`` in an image ``width`` pixels wide."""
    out = kps.clone()
    out[:, 0] = (width - 1) - out[:, 0]
    return out


def flip_box(box: torch.Tensor, width: int) -> torch.Tensor:
    """Horizontal mirror of an ``(x0, y0, x1, y1)`` box."""
    x0, y0, x1, y1 = box.tolist()
    return torch.tensor([(width - 1) - x1, y0, (width - 1) - x0, y1], dtype=box.dtype)
