"""Coordinate conventions shared by every stage.

* **Pixel coordinates**: ``(x, y)``, x to the right, y down, pixel centres at
  integer coordinates (the top-left pixel's centre is ``(0, 0)``).
* **Normalised coordinates**: ``(x, y)`` in ``[-1, 1]`` with ``-1`` at the centre
  of the first pixel and ``+1`` at the centre of the last one — PyTorch's
  ``align_corners=True`` convention, used by the published NC-Net, DCCNet and
  SFNet code.
* **Feature cells**: cell ``j`` of a grid ``w`` cells wide sits at normalised
  ``x = linspace(-1, 1, w)[j]``. So matches on a feature grid convert to pixels
  of any image size without knowing the network's stride.
"""

from __future__ import annotations

import torch


def cell_centers(n: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Normalised coordinates ``(n,)`` of the centres of ``n`` cells along one axis."""
    if n == 1:
        return torch.zeros(1, device=device, dtype=dtype)
    return torch.linspace(-1.0, 1.0, n, device=device, dtype=dtype)


def cell_grid(h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Normalised ``(x, y)`` of every cell of an ``h × w`` grid: ``(h, w, 2)``."""
    ys = cell_centers(h, device, dtype)
    xs = cell_centers(w, device, dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1)


def pixel_grid(h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Pixel ``(x, y)`` of every pixel of an ``h × w`` image: ``(h, w, 2)``."""
    ys = torch.arange(h, device=device, dtype=dtype)
    xs = torch.arange(w, device=device, dtype=dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1)


def normalized_to_pixels(coords: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Normalised ``(..., 2)`` → pixel ``(..., 2)`` in an image of ``size = (H, W)``."""
    h, w = size
    scale = coords.new_tensor([(w - 1) / 2.0, (h - 1) / 2.0])
    return (coords + 1.0) * scale


def pixels_to_normalized(coords: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Pixel ``(..., 2)`` → normalised ``(..., 2)`` for an image of ``size = (H, W)``."""
    h, w = size
    scale = coords.new_tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)])
    return coords * scale - 1.0


def affine_grid_points(theta: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Apply 2×3 affine maps to normalised points.

    theta: ``(B, 2, 3)``; points: ``(B, N, 2)`` → ``(B, N, 2)`` (``theta @ [x, y, 1]``).
    """
    if theta.dim() != 3 or theta.shape[1:] != (2, 3):
        raise ValueError(f"theta must be (B, 2, 3), got {tuple(theta.shape)}")
    if points.dim() != 3 or points.shape[-1] != 2:
        raise ValueError(f"points must be (B, N, 2), got {tuple(points.shape)}")
    return points @ theta[:, :, :2].transpose(1, 2) + theta[:, :, 2].unsqueeze(1)
