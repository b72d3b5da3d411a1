"""Reading images safely and turning them into normalised network inputs.

Every image goes through :func:`load_image`, which turns it upright (the
EXIF orientation a camera or phone stores is applied, as image viewers do),
turns any readable format (grayscale, RGBA, palette, 16-bit) into 8-bit RGB
and rejects everything else with a :class:`~semcorr.errors.DataError` naming the
file. Sizes are always those of the upright image (:func:`image_file_size`
reads one from the header alone).

Reading images needs only PIL: torch is imported by the functions that make
tensors, so checking and reading inputs (``semcorr`` validates them before it
loads any model) stays quick.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .checks import not_an_image, require_file
from .errors import DataError, UsageError

if TYPE_CHECKING:
    import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Images with more pixels than this are refused before decoding (about 16k × 16k): a guard against
#: decompression bombs (a small file that claims a huge size). Anything below is decoded (a large
#: JPEG at a reduced scale when the caller needs fewer pixels) and resized by the caller.
MAX_PIXELS = 268_435_456
#: The working sizes (a side, in pixels) images may be resized to.
MIN_SIZE, MAX_SIZE = 16, 4096
#: The EXIF tag of the orientation; orientations 5–8 swap width and height.
EXIF_ORIENTATION = 0x0112
SWAPPING_ORIENTATIONS = (5, 6, 7, 8)


@contextlib.contextmanager
def _pixel_limit() -> Iterator[None]:
    """Let PIL open headers beyond its own bomb limit (it warns from 89 and refuses from 179 megapixels on):
    :func:`load_image` checks the size against :data:`MAX_PIXELS` itself, before decoding."""
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # PIL warns above this (ignored here) and refuses above twice this
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def exif_orientation(img: Image.Image) -> int:
    """The EXIF orientation of an opened image (1, upright, when it has none or an invalid one)."""
    try:
        value = int(img.getexif().get(EXIF_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - a damaged EXIF block is ignored, as viewers do
        return 1
    return value if 1 <= value <= 8 else 1


def upright_size(img: Image.Image) -> tuple[int, int]:
    """``(H, W)`` of an opened image once its EXIF orientation is applied (read from the header)."""
    w, h = img.size
    return (w, h) if exif_orientation(img) in SWAPPING_ORIENTATIONS else (h, w)


def upright(img: Image.Image) -> Image.Image:
    """The decoded image turned as its EXIF orientation says (the image itself when upright)."""
    if exif_orientation(img) == 1:
        return img
    return ImageOps.exif_transpose(img)


def image_file_size(path: str | Path) -> tuple[int, int] | None:
    """``(H, W)`` of the upright image, from the header alone; None when the file is absent or unreadable."""
    try:
        with _pixel_limit(), Image.open(path) as img:
            return upright_size(img)
    except Exception:  # noqa: BLE001 - an unreadable image is reported when it is loaded
        return None


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

    The image is turned upright (EXIF orientation). ``reduce_to``: the caller
    only needs about this many pixels per side, so a large JPEG may be decoded
    at a reduced scale (never below ``reduce_to``) to bound memory; the
    original (upright) size is in ``img.info["original_size"]`` as ``(H, W)``.
    Raises :class:`DataError` with one sentence naming the file when it is
    missing, not an image, truncated, or beyond :data:`MAX_PIXELS`.
    """
    path = require_file(path, "image")
    try:
        with _pixel_limit(), Image.open(path) as img:
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise DataError(
                    f"image '{path}' claims {w}x{h} pixels ({w * h / 1e6:.0f} megapixels), more than the "
                    f"{MAX_PIXELS / 1e6:.0f} semcorr decodes (a guard against decompression bombs); reduce it first"
                )
            size = upright_size(img)
            if reduce_to is not None and img.format == "JPEG" and min(w, h) > 2 * reduce_to:
                img.draft("RGB", (reduce_to, reduce_to))
            img.load()
            out = _to_rgb8(upright(img))
            out.info["original_size"] = size
            return out
    except DataError:
        raise
    except UnidentifiedImageError:
        raise not_an_image(path) from None
    except Image.DecompressionBombError as exc:
        raise DataError(f"image '{path}' is refused as a possible decompression bomb ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"image '{path}' is unreadable or truncated ({exc})") from None


def original_size(img: Image.Image) -> tuple[int, int]:
    """``(H, W)`` of the file an image was read from (before any reduced decoding)."""
    return tuple(img.info.get("original_size", (img.height, img.width)))  # type: ignore[return-value]


def load_mask(path: str | Path) -> np.ndarray:
    """Read a mask image as a boolean array (H, W): every non-zero pixel is foreground."""
    path = require_file(path, "mask")
    try:
        with _pixel_limit(), Image.open(path) as img:
            img.load()
            arr = np.asarray(upright(img))
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"mask '{path}' is unreadable ({exc})") from None
    if arr.ndim == 3:
        arr = arr[..., :3].max(axis=2) if arr.shape[2] >= 3 else arr[..., 0]
    return arr > 0


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a bool mask ``(h, w)`` to ``size = (H, W)`` → bool ``(H, W)``."""
    h, w = size
    img = Image.fromarray(mask.astype(np.uint8) * 255, mode="L")
    if img.size != (w, h):
        img = img.resize((w, h), Image.NEAREST)
    return np.asarray(img) > 127


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
    if min(h, w) < MIN_SIZE or max(h, w) > MAX_SIZE:
        raise UsageError(f"working size {h}x{w} is outside {MIN_SIZE}..{MAX_SIZE} pixels")
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
