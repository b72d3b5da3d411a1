"""Applying a dense flow: backward warping of images and masks, keypoint transfer.

A flow ``(B, H, W, 2)`` gives, for each pixel of the frame it is defined on,
the absolute pixel ``(x, y)`` to read in the other image. Warping an image of
the *source* into the *target* frame therefore uses ``flow/trg_to_src``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .geometry import pixels_to_normalized


def _check_flow(flow: torch.Tensor) -> None:
    if flow.dim() != 4 or flow.shape[-1] != 2:
        raise ValueError(f"flow must be (B, H, W, 2), got {tuple(flow.shape)}")


def warp_image(image: torch.Tensor, flow: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Backward warp: ``out[b, :, y, x] = image[b, :, flow[b, y, x, 1], flow[b, y, x, 0]]``.

    image ``(B, C, H_in, W_in)``; flow ``(B, H_out, W_out, 2)`` in pixel
    coordinates of ``image`` → ``(B, C, H_out, W_out)``. Samples outside the
    image are zero.
    """
    _check_flow(flow)
    if image.dim() != 4 or image.shape[0] != flow.shape[0]:
        raise ValueError(f"image must be (B, C, H, W) with B={flow.shape[0]}, got {tuple(image.shape)}")
    grid = pixels_to_normalized(flow.to(image.dtype), tuple(image.shape[-2:]))
    return F.grid_sample(image, grid, mode=mode, padding_mode="zeros", align_corners=True)


def warp_mask(mask: torch.Tensor, flow: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Warp a binary mask ``(B, 1, H_in, W_in)`` with ``flow`` ``(B, H_out, W_out, 2)``.

    Bilinear sampling then ``> threshold``; returns a bool ``(B, 1, H_out, W_out)``.
    """
    return warp_image(mask.float(), flow) > threshold


def valid_flow_mask(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """True where ``flow`` ``(B, H, W, 2)`` points inside an image of ``size = (H, W)``: ``(B, H, W)``."""
    _check_flow(flow)
    h, w = size
    x, y = flow[..., 0], flow[..., 1]
    return (x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5) & torch.isfinite(x) & torch.isfinite(y)


def points_through_flow(points: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Move keypoints with a dense flow, interpolating it bilinearly.

    points ``(N, 2)`` pixel ``(x, y)`` in the frame the flow is defined on;
    flow ``(H, W, 2)`` → ``(N, 2)`` pixel positions in the other image. Points
    that are NaN, or more than half a pixel outside the frame, come back NaN.
    """
    if points.dim() != 2 or points.shape[-1] != 2:
        raise ValueError(f"points must be (N, 2), got {tuple(points.shape)}")
    if flow.dim() != 3 or flow.shape[-1] != 2:
        raise ValueError(f"flow must be (H, W, 2), got {tuple(flow.shape)}")
    h, w = flow.shape[:2]
    pts = points.to(flow.dtype)
    inside = (
        torch.isfinite(pts).all(dim=1)
        & (pts[:, 0] >= -0.5)
        & (pts[:, 0] <= w - 0.5)
        & (pts[:, 1] >= -0.5)
        & (pts[:, 1] <= h - 0.5)
    )
    safe = torch.where(inside.unsqueeze(1), pts, torch.zeros_like(pts))
    grid = pixels_to_normalized(safe, (h, w)).view(1, 1, -1, 2)
    sampled = F.grid_sample(
        flow.permute(2, 0, 1).unsqueeze(0), grid, mode="bilinear", padding_mode="border", align_corners=True
    )
    out = sampled.view(2, -1).t()
    return torch.where(inside.unsqueeze(1), out, torch.full_like(out, float("nan")))
