"""SFNet's training objective (Lee et al., "SFNet: Learning Object-aware Semantic Correspondence", CVPR 2019).

Everything works on the *feature grid*. A match grid ``(B, h, w, 2)`` holds,
for each cell of one image, the normalised ``(x, y)`` of its match in the other
image (cells at ``linspace(-1, 1, w)``, see :mod:`semcorr.geometry`); the
corresponding *flow* is the displacement ``grid − identity`` in normalised
coordinates, as in the authors' code. Masks are ``(B, 1, h, w)`` floats in
{0, 1} on the same grid (:func:`masks_on_grid`).

Terms, each summed over both directions (source→target and target→source):

* mask consistency (λ = 3): ``mean_p (M_s(p) − M_t(grid_s(p)))²``;
* flow consistency (λ = 16): ``Σ_p M_s(p) ‖F_s(p) + F_t(grid_s(p))‖² / Σ_p M_s(p)``;
* smoothness (λ = 0.5): mean of ``M_s · |∂F_s|`` over the two flow components
  and the two forward differences (x and y), the last column/row having zero
  difference (replicate padding).

With the mask regression layers (object co-segmentation, SFNet TPAMI 2020)
an L2 term is added: ``mean_p (M̂_s(p) − M_s(p))²`` for each image's predicted
mask ``M̂`` (:func:`mask_regression_loss`, weight ``lambda_mask_regression``).

Warping samples bilinearly with ``align_corners=True`` and zeros outside.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..geometry import cell_grid

#: The paper's weights of the three terms.
LAMBDA_MASK = 3.0
LAMBDA_FLOW = 16.0
LAMBDA_SMOOTH = 0.5
#: Weight of the mask regression (L2) term when SFNet predicts masks (semcorr's choice; not in the public code).
LAMBDA_MASK_REGRESSION = 1.0
#: Threshold on the bilinearly downsampled masks.
MASK_THRESHOLD = 0.1


def _check_grid(grid: torch.Tensor, name: str = "grid") -> None:
    if grid.dim() != 4 or grid.shape[-1] != 2:
        raise ValueError(f"{name} must be (B, h, w, 2), got {tuple(grid.shape)}")


def _check_mask(mask: torch.Tensor, grid: torch.Tensor, name: str) -> None:
    b, h, w, _ = grid.shape
    if mask.dim() != 4 or tuple(mask.shape) != (b, 1, h, w):
        raise ValueError(f"{name} must be (B, 1, h, w) = {(b, 1, h, w)} on the grid, got {tuple(mask.shape)}")


def masks_on_grid(mask: torch.Tensor, size: tuple[int, int], threshold: float = MASK_THRESHOLD) -> torch.Tensor:
    """Image mask ``(B, 1, H, W)`` → binary float mask ``(B, 1, h, w)`` on the feature grid.

    Bilinear resize (``align_corners=True``, so cell ``j`` samples pixel
    ``j·(W−1)/(w−1)``) then ``> threshold``.
    """
    if mask.dim() != 4 or mask.shape[1] != 1:
        raise ValueError(f"mask must be (B, 1, H, W), got {tuple(mask.shape)}")
    small = F.interpolate(mask.float(), size=tuple(size), mode="bilinear", align_corners=True)
    return (small > threshold).to(mask.dtype if mask.is_floating_point() else torch.float32)


def grid_to_displacement(grid: torch.Tensor) -> torch.Tensor:
    """Match grid ``(B, h, w, 2)`` → normalised displacement ``grid − identity`` ``(B, h, w, 2)``."""
    _check_grid(grid)
    h, w = grid.shape[1:3]
    return grid - cell_grid(h, w, grid.device, grid.dtype)


def sample_on_grid(field: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Bilinearly read a field of the other image at matched positions.

    field ``(B, C, h', w')`` on the other image's grid; grid ``(B, h, w, 2)``
    normalised positions in it → ``(B, C, h, w)``; zero outside.
    """
    _check_grid(grid)
    return F.grid_sample(field, grid.to(field.dtype), mode="bilinear", padding_mode="zeros", align_corners=True)


def mask_consistency(grid: torch.Tensor, mask_own: torch.Tensor, mask_other: torch.Tensor) -> torch.Tensor:
    """One direction of the mask consistency term: ``mean (mask_own − warp(mask_other; grid))²``.

    grid ``(B, h, w, 2)`` into the other image; mask_own ``(B, 1, h, w)``;
    mask_other ``(B, 1, h', w')`` → scalar.
    """
    _check_grid(grid)
    _check_mask(mask_own, grid, "mask_own")
    warped = sample_on_grid(mask_other, grid)
    return ((mask_own - warped) ** 2).mean()


def flow_consistency(
    grid: torch.Tensor, grid_other: torch.Tensor, mask_own: torch.Tensor
) -> torch.Tensor:
    """One direction of the flow consistency term.

    ``Σ_p M(p) ‖F(p) + F_other(grid(p))‖² / Σ_p M(p)`` where ``F`` and
    ``F_other`` are the displacements of ``grid`` ``(B, h, w, 2)`` and
    ``grid_other`` ``(B, h', w', 2)``; mask_own ``(B, 1, h, w)`` → scalar
    (0 when the mask is empty).
    """
    _check_grid(grid)
    _check_grid(grid_other, "grid_other")
    _check_mask(mask_own, grid, "mask_own")
    flow = grid_to_displacement(grid).permute(0, 3, 1, 2)  # (B, 2, h, w)
    flow_other = grid_to_displacement(grid_other).permute(0, 3, 1, 2)
    back = sample_on_grid(flow_other, grid)
    residual = ((flow + back) ** 2).sum(dim=1, keepdim=True) * mask_own
    return residual.sum() / mask_own.sum().clamp_min(1.0)


def forward_differences(flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Absolute forward differences of ``(B, C, h, w)`` along x and y, each ``(B, C, h, w)``.

    ``dx[..., i, j] = |f[..., i, j+1] − f[..., i, j]|`` (0 in the last column),
    ``dy`` likewise down the rows.
    """
    padded = F.pad(flow, (0, 1, 0, 1), mode="replicate")
    dx = (padded[:, :, :-1, 1:] - padded[:, :, :-1, :-1]).abs()
    dy = (padded[:, :, 1:, :-1] - padded[:, :, :-1, :-1]).abs()
    return dx, dy


def flow_smoothness(grid: torch.Tensor, mask_own: torch.Tensor) -> torch.Tensor:
    """One direction of the smoothness term: mean of ``mask · |∂F|`` over ``(B, 4, h, w)``.

    grid ``(B, h, w, 2)``, mask_own ``(B, 1, h, w)`` → scalar. The four
    channels are the x/y flow components differenced along x and along y.
    """
    _check_grid(grid)
    _check_mask(mask_own, grid, "mask_own")
    dx, dy = forward_differences(grid_to_displacement(grid).permute(0, 3, 1, 2))
    return (torch.cat([dx, dy], dim=1) * mask_own).mean()


def sfnet_objective(
    grid_s2t: torch.Tensor,
    grid_t2s: torch.Tensor,
    mask_src: torch.Tensor,
    mask_trg: torch.Tensor,
    lambda_mask: float = LAMBDA_MASK,
    lambda_flow: float = LAMBDA_FLOW,
    lambda_smooth: float = LAMBDA_SMOOTH,
) -> tuple[torch.Tensor, dict[str, float]]:
    """SFNet's total loss from the matches of both directions.

    grid_s2t ``(B, hA, wA, 2)`` (target positions of source cells), grid_t2s
    ``(B, hB, wB, 2)``, mask_src ``(B, 1, hA, wA)``, mask_trg ``(B, 1, hB, wB)``
    (binary, on the grids) → ``(loss, {"loss", "mask", "flow", "smooth"})``,
    the logged terms unweighted and summed over both directions.
    """
    l_mask = mask_consistency(grid_s2t, mask_src, mask_trg) + mask_consistency(grid_t2s, mask_trg, mask_src)
    l_flow = flow_consistency(grid_s2t, grid_t2s, mask_src) + flow_consistency(grid_t2s, grid_s2t, mask_trg)
    l_smooth = flow_smoothness(grid_s2t, mask_src) + flow_smoothness(grid_t2s, mask_trg)
    total = lambda_mask * l_mask + lambda_flow * l_flow + lambda_smooth * l_smooth
    logs = {
        "loss": float(total.detach()),
        "mask": float(l_mask.detach()),
        "flow": float(l_flow.detach()),
        "smooth": float(l_smooth.detach()),
    }
    return total, logs


def mask_regression_loss(predicted: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The L2 mask term of one image: ``mean (predicted − mask)²``.

    predicted ``(B, 1, h, w)`` in [0, 1], mask ``(B, 1, h, w)`` binary on the same grid → scalar.
    """
    if predicted.shape != mask.shape or predicted.dim() != 4:
        raise ValueError(f"predicted {tuple(predicted.shape)} and mask {tuple(mask.shape)} must both be (B, 1, h, w)")
    return ((predicted - mask.to(predicted.dtype)) ** 2).mean()
