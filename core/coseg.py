"""Object co-segmentation from two predicted foreground masks and the flows between the images.

Each image's co-segmentation is its own predicted foreground multiplied by
the other image's predicted foreground read through the flow (SFNet TPAMI
2020): a pixel is kept when it is foreground *and* matches foreground.
Masks are float ``(H, W)`` in [0, 1]; :data:`THRESHOLD` makes them binary.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .warp import warp_image

#: A co-segmentation mask value above this is foreground (IoU, PNG output).
THRESHOLD = 0.5


def upsample_mask(mask: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """A grid mask ``(h, w)`` → ``(H, W)`` float32 at an image's size (bilinear, ``align_corners=True``)."""
    m = F.interpolate(mask.detach().float().reshape(1, 1, *mask.shape[-2:]), size=tuple(size), mode="bilinear", align_corners=True)
    return m[0, 0].cpu().numpy()


def read_through_flow(mask: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """The other image's mask ``(H', W')`` read at every pixel's match: flow ``(H, W, 2)`` → ``(H, W)``.

    Bilinear; 0 where the flow points outside the other image or is NaN.
    """
    f = torch.from_numpy(np.nan_to_num(np.asarray(flow, dtype=np.float32), nan=-1e6)).unsqueeze(0)
    m = torch.from_numpy(np.asarray(mask, dtype=np.float32))[None, None]
    return warp_image(m, f)[0, 0].numpy()


def cosegment(
    mask_src: np.ndarray, mask_trg: np.ndarray, flow_src_to_trg: np.ndarray, flow_trg_to_src: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Co-segmentation of both images: ``(mask_src · mask_trg∘flow_st (H_s, W_s), mask_trg · mask_src∘flow_ts (H_t, W_t))``."""
    co_src = np.asarray(mask_src, dtype=np.float32) * read_through_flow(mask_trg, flow_src_to_trg)
    co_trg = np.asarray(mask_trg, dtype=np.float32) * read_through_flow(mask_src, flow_trg_to_src)
    return co_src.astype(np.float32), co_trg.astype(np.float32)


__all__ = ["THRESHOLD", "upsample_mask", "read_through_flow", "cosegment"]
