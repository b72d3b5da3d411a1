"""Foreground masks for synthetic pairs: segmentation PNGs, boxes, or the whole image.

A :class:`MaskRef` says where an image's foreground comes from;
:func:`mask_at_size` renders it at the training size as ``(1, H, W)`` float {0, 1}.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import DataError
from ..images import resize_mask, upright

#: PASCAL VOC's colour for "void" (object boundaries, 255 in the palette index images).
VOC_VOID_RGB = (224, 224, 192)
VOC_VOID_INDEX = 255


@dataclass(frozen=True)
class MaskRef:
    """Where one image's foreground comes from.

    ``kind``: ``"segmentation"`` (``path`` to a PNG), ``"box"`` (``box`` =
    ``(x0, y0, x1, y1)`` inclusive pixel coordinates of the original image) or
    ``"whole"`` (every pixel is foreground).
    """

    kind: str
    path: Path | None = None
    box: tuple[float, float, float, float] | None = None


WHOLE_IMAGE = MaskRef("whole")


def segmentation_foreground(path: str | Path) -> np.ndarray:
    """Read a PASCAL-VOC-style segmentation PNG as a bool foreground ``(h, w)``.

    Every labelled object is foreground; 0 (background) and 255 (void, object
    borders) are background. Palette and grey images are read as label
    indices; RGB images as VOC's colour code (black background, void
    ``(224, 224, 192)``).
    """
    path = Path(path)
    try:
        with Image.open(path) as opened:
            opened.load()
            img = upright(opened)
            arr = np.asarray(img.convert("RGB") if img.mode not in ("P", "L", "I", "I;16") else img)
    except FileNotFoundError:
        raise DataError(f"mask '{path}' does not exist") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise DataError(f"mask '{path}' is unreadable ({exc})") from None
    if arr.ndim == 3:
        void = np.all(arr[..., :3] == np.array(VOC_VOID_RGB, dtype=arr.dtype), axis=-1)
        return arr[..., :3].any(axis=-1) & ~void
    return (arr > 0) & (arr != VOC_VOID_INDEX)


def _resize_bool(mask: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of a bool ``(h, w)`` to float ``(1, H, W)`` for ``size = (H, W)``."""
    return torch.from_numpy(resize_mask(mask, size).astype(np.float32)).unsqueeze(0)


def box_mask(box: tuple[float, float, float, float], orig_size: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """A box of the original image rendered at ``size = (H, W)``: ``(1, H, W)`` float {0, 1}.

    A resized pixel is foreground when its centre, mapped back to the original
    image (half-pixel convention), lies inside the box.
    """
    oh, ow = orig_size
    h, w = size
    x0, y0, x1, y1 = box
    xs = (torch.arange(w, dtype=torch.float64) + 0.5) * ow / w - 0.5
    ys = (torch.arange(h, dtype=torch.float64) + 0.5) * oh / h - 0.5
    inside_x = (xs >= x0 - 0.5) & (xs <= x1 + 0.5)
    inside_y = (ys >= y0 - 0.5) & (ys <= y1 + 0.5)
    return (inside_y[:, None] & inside_x[None, :]).to(torch.float32).unsqueeze(0)


def mask_at_size(ref: MaskRef, orig_size: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """Render ``ref`` for an image of ``orig_size = (h, w)`` at ``size = (H, W)``: ``(1, H, W)``."""
    if ref.kind == "whole":
        return torch.ones(1, size[0], size[1])
    if ref.kind == "box":
        assert ref.box is not None
        return box_mask(ref.box, orig_size, size)
    if ref.kind == "segmentation":
        assert ref.path is not None
        fg = segmentation_foreground(ref.path)
        if fg.shape != tuple(orig_size):
            raise DataError(
                f"mask '{ref.path}' is {fg.shape[1]}x{fg.shape[0]} but its image is {orig_size[1]}x{orig_size[0]}"
            )
        return _resize_bool(fg, size)
    raise ValueError(f"unknown mask kind {ref.kind!r}")


def find_mask_file(image: Path, image_root: Path, mask_root: Path) -> Path | None:
    """The segmentation PNG of ``image`` under ``mask_root``: same relative path, else same stem at the top."""
    rel = image.relative_to(image_root).with_suffix(".png")
    for candidate in (mask_root / rel, mask_root / f"{image.stem}.png"):
        if candidate.is_file():
            return candidate
    return None


def describe_masks(refs: list[MaskRef]) -> str:
    """One phrase saying which foreground masks a source uses, e.g. ``"segmentation PNGs (40), whole image (2)"``."""
    names = {"segmentation": "segmentation PNGs", "box": "bounding boxes", "whole": "whole image (no masks)"}
    counts: dict[str, int] = {}
    for r in refs:
        counts[r.kind] = counts.get(r.kind, 0) + 1
    return ", ".join(f"{names[k]} ({n})" for k, n in counts.items()) or "none"
