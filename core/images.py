"""Reading images safely and turning them into normalised network inputs.

Every image goes through :func:`load_image`, which turns any readable format
(grayscale, RGBA, palette, 16-bit) into 8-bit RGB and rejects everything else
with a :class:`~core.errors.DataError` naming the file.

Reading images needs only PIL: torch is imported by the functions that make
tensors, so checking and reading inputs (``semcorr`` validates them before it
loads any model) stays quick.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from .checks import not_an_image, require_file
from .errors import DataError, UsageError

if TYPE_CHECKING:
    import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Images with more pixels than this are refused before decoding (about 16k × 16k).
MAX_PIXELS = 268_435_456


def _to_rgb8(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB (16-bit and float images are rescaled)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        if img.mode.startswith("I;16"):
            lo, hi = 0.0, 65535.0
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        arr = np.clip((arr - lo) * scale, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode != "RGB":
        return img.convert("RGB")
    return img


def load_image(path: str | Path, reduce_to: int | None = None) -> Image.Image:
    """Read an image file as 8-bit RGB.

    ``reduce_to``: the caller only needs about this many pixels per side, so a
    large JPEG may be decoded at a reduced scale (never below ``reduce_to``) to
    bound memory; the original size is then in ``img.info["original_size"]``
    as ``(H, W)``. Raises :class:`DataError` with one sentence naming the file
    when it is missing, not an image, truncated, or implausibly large.
    """
    path = require_file(path, "image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if w * h > MAX_PIXELS:
                    raise DataError(f"image '{path}' is too large ({w}x{h} pixels)")
                if reduce_to is not None and img.format == "JPEG" and min(w, h) > 2 * reduce_to:
                    img.draft("RGB", (reduce_to, reduce_to))
                img.load()
                out = _to_rgb8(img)
                out.info["original_size"] = (h, w)
                return out
    except DataError:
        raise
    except UnidentifiedImageError:
        raise not_an_image(path) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"image '{path}' is unreadable or truncated ({exc})") from None


def original_size(img: Image.Image) -> tuple[int, int]:
    """``(H, W)`` of the file an image was read from (before any reduced decoding)."""
    return tuple(img.info.get("original_size", (img.height, img.width)))  # type: ignore[return-value]


def load_mask(path: str | Path) -> np.ndarray:
    """Read a mask image as a boolean array (H, W): every non-zero pixel is foreground."""
    path = require_file(path, "mask")
    try:
        with Image.open(path) as img:
            img.load()
            arr = np.asarray(img)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise DataError(f"mask '{path}' is unreadable ({exc})") from None
    if arr.ndim == 3:
        arr = arr[..., :3].max(axis=2) if arr.shape[2] >= 3 else arr[..., 0]
    return arr > 0


def parse_size(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """Normalise a working-size option to ``(H, W)``.

    An int ``N`` means the square ``N × N`` (the papers' convention: images are
    resized to a square regardless of aspect ratio).
    """
    if isinstance(size, int):
        h = w = size
    else:
        if len(size) != 2:
            raise UsageError(f"size must be N or (H, W), got {size!r}")
        h, w = int(size[0]), int(size[1])
    if h < 16 or w < 16 or h > 4096 or w > 4096:
        raise UsageError(f"working size {h}x{w} is outside 16..4096 pixels")
    return h, w


#: How :func:`image_to_tensor` resizes: PIL bilinear (antialiased when shrinking), or
#: ``F.interpolate`` bilinear (align_corners=False, no antialiasing) on the normalised tensor.
RESIZE_MODES = ("pil", "tensor")


def image_to_tensor(img: Image.Image, size: int | tuple[int, int] | None = None, resize: str = "pil") -> torch.Tensor:
    """PIL RGB image → ImageNet-normalised tensor ``(1, 3, H', W')``.

    ``size`` (``N`` or ``(H', W')``) resizes with PIL bilinear filtering (the
    published evaluation protocols' choice; ``resize="pil"``) or, with
    ``resize="tensor"``, by ``F.interpolate(bilinear, align_corners=False)`` on
    the normalised full-size tensor (MMNet's dataset code); ``None`` keeps the
    image size.
    """
    import torch
    import torch.nn.functional as F

    if resize not in RESIZE_MODES:
        raise UsageError(f"resize must be one of {', '.join(RESIZE_MODES)}, not '{resize}'")
    target = parse_size(size) if size is not None else None
    if target is not None and resize == "pil" and img.size != (target[1], target[0]):
        img = img.resize((target[1], target[0]), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    t = torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    t = (t - mean) / std
    if target is not None and resize == "tensor" and tuple(t.shape[-2:]) != target:
        t = F.interpolate(t, size=target, mode="bilinear", align_corners=False)
    return t


def image_to_float(img: Image.Image) -> torch.Tensor:
    """PIL RGB image → float tensor ``(1, 3, H, W)`` in [0, 1] (no normalisation)."""
    import torch

    arr = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()


def float_to_image(t: torch.Tensor) -> Image.Image:
    """Float tensor ``(3, H, W)`` or ``(1, 3, H, W)`` in [0, 1] → PIL RGB image."""
    if t.dim() == 4:
        t = t[0]
    arr = (t.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
    return Image.fromarray(arr, mode="RGB")


def normalize_imagenet(x: torch.Tensor) -> torch.Tensor:
    """Float images ``(B, 3, H, W)`` in [0, 1] → ImageNet-normalised ``(B, 3, H, W)``."""
    import torch

    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


def resize_tensor(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``(B, C, H, W)`` to ``(B, C, *size)`` (antialiased when shrinking)."""
    import torch.nn.functional as F

    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
