"""MMNet's multi-scale keypoint loss, with the public training code's conventions.

For every level, both directions and every annotated keypoint: the
correlation row at the keypoint (bilinear over the 4 surrounding source
cells), a softmax over the target positions, and a binary cross-entropy
summed over the positions against a target map that puts inverse-distance
weights on the 4 cells around the true match, blurred by a 3×3 Gaussian
(the public ``train.py`` ``cross_entropy_loss2d`` with ``BilinearInterpolate``
and ``getBlurredGT``). The total over levels (weight 1 each), directions and
keypoints is divided by the batch size.

Coordinates: keypoints are pixel ``(x, y)`` in the (resized) images; pixel
``x`` of a ``W``-pixel image is cell ``x·w/W`` of a ``w``-cell grid (no
half-pixel shift), as the public code trains and transfers keypoints at test
time (:func:`semcorr.models.mmnet.transfer_points`: cell ``j`` → pixel ``j·W/w``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

#: Standard deviation of the 3×3 target blur: the public ``gaussian2d(3)``, ``σ = 3 / 2 / 2.354``.
TARGET_SIGMA = 3 / 2 / 2.354
#: Smallest distance of ``getBlurredGT``'s inverse-distance weights.
MIN_DISTANCE = 1e-5
DIRECTIONS = ("src_to_trg", "trg_to_src")


def pixels_to_grid(kps: torch.Tensor, image_size: tuple[int, int], grid_size: tuple[int, int]) -> torch.Tensor:
    """Pixel ``(x, y)`` ``(B, N, 2)`` in an image of ``(H, W)`` → cell units ``(x·w/W, y·h/H)`` of an ``(h, w)`` grid."""
    (hh, ww), (h, w) = image_size, grid_size
    scale = kps.new_tensor([w / float(ww), h / float(hh)])
    return kps * scale


def valid_keypoints(src_kps: torch.Tensor, trg_kps: torch.Tensor, src_size, trg_size) -> torch.Tensor:
    """``(B, N)`` bool: both points finite and inside their image (half a pixel of slack)."""

    def inside(kps, size):
        h, w = size
        x, y = kps[..., 0], kps[..., 1]
        return torch.isfinite(kps).all(-1) & (x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)

    return inside(src_kps, src_size) & inside(trg_kps, trg_size)


def gaussian_kernel_3x3(sigma: float = TARGET_SIGMA, device=None, dtype=torch.float32) -> torch.Tensor:
    """Normalised 3×3 Gaussian ``(1, 1, 3, 3)``."""
    g = torch.exp(-torch.tensor([1.0, 0.0, 1.0], dtype=dtype, device=device) / (2 * sigma**2))
    k = g[:, None] * g[None, :]
    return (k / k.sum()).view(1, 1, 3, 3)


def inverse_distance_map(points: torch.Tensor, size: tuple[int, int], min_distance: float = MIN_DISTANCE) -> torch.Tensor:
    """Weights ``∝ 1 / max(distance, min_distance)`` on the (up to) 4 grid cells around each point, summing to 1.

    points ``(B, N, 2)`` in cell units (finite) → ``(B, N, h, w)``. A point on a
    cell puts (almost) all its weight there; cells off the grid are dropped.
    """
    h, w = size
    b, n, _ = points.shape
    x, y = points[..., 0], points[..., 1]
    x0, y0 = x.floor(), y.floor()
    out = points.new_zeros(b * n, h * w)
    cells, weights = [], []
    for cx, cy in ((x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)):
        inside = (cx >= 0) & (cx <= w - 1) & (cy >= 0) & (cy <= h - 1)
        dist = torch.sqrt((x - cx) ** 2 + (y - cy) ** 2)
        weights.append(torch.where(inside, 1.0 / dist.clamp_min(min_distance), torch.zeros_like(dist)))
        cells.append((cy.clamp(0, h - 1) * w + cx.clamp(0, w - 1)).long())
    wsum = torch.stack(weights).sum(0).clamp_min(1e-12)
    for c, wt in zip(cells, weights):
        out.scatter_add_(1, c.view(-1, 1), (wt / wsum).reshape(-1, 1))
    return out.view(b, n, h, w)


def target_maps(points: torch.Tensor, size: tuple[int, int], sigma: float = TARGET_SIGMA) -> torch.Tensor:
    """MMNet's training target: :func:`inverse_distance_map` blurred by a 3×3 Gaussian.

    points ``(B, N, 2)`` cell units → ``(B, N, h, w)``; zero padding at the
    borders (the public ``F.conv2d(..., padding=1)``), so a border target sums to less than 1.
    """
    b, n, _ = points.shape
    h, w = size
    m = inverse_distance_map(points, size).view(b * n, 1, h, w)
    m = F.conv2d(m, gaussian_kernel_3x3(sigma, m.device, m.dtype), padding=1)
    return m.view(b, n, h, w)


def position_bce(rows: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of ``softmax(rows)`` over positions, summed per keypoint.

    rows: raw scores ``(B, N, h, w)``; targets ``(B, N, h, w)`` in [0, 1] → ``(B, N)``.
    Logs are clamped at −100 as ``nn.BCELoss`` does.
    """
    b, n = rows.shape[:2]
    prob = torch.softmax(rows.reshape(b, n, -1), dim=-1)
    bce = F.binary_cross_entropy(prob, targets.reshape(b, n, -1).to(prob.dtype), reduction="none")
    return bce.sum(-1)


def sample_volume_rows(corr: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear rows of a full volume at source points.

    corr ``(B, hA, wA, hB, wB)``, points ``(B, N, 2)`` source cell units
    (clamped to the grid; NaN → 0) → ``(B, N, hB, wB)``.
    """
    b, ha, wa, hb, wb = corr.shape
    p = torch.nan_to_num(points, nan=0.0)
    norm = torch.stack(
        [p[..., 0].clamp(0, wa - 1) * 2 / max(wa - 1, 1) - 1, p[..., 1].clamp(0, ha - 1) * 2 / max(ha - 1, 1) - 1], -1
    )
    grid = corr.reshape(b, ha, wa, hb * wb).permute(0, 3, 1, 2)
    rows = F.grid_sample(grid, norm.unsqueeze(1), mode="bilinear", align_corners=True)  # (B, hB*wB, 1, N)
    return rows[:, :, 0].permute(0, 2, 1).reshape(b, -1, hb, wb)


#: ``sample_rows(level, direction, points (B, N, 2) cell units) -> (B, N, h, w)`` scores.
RowSampler = Callable[[int, str, torch.Tensor], torch.Tensor]


def multiscale_keypoint_loss(
    sample_rows: RowSampler,
    grids: Sequence[tuple[tuple[int, int], tuple[int, int]]],
    src_kps: torch.Tensor,
    trg_kps: torch.Tensor,
    src_size: tuple[int, int],
    trg_size: tuple[int, int],
    sigma: float = TARGET_SIGMA,
) -> tuple[torch.Tensor, dict[str, float]]:
    """MMNet's objective over all levels and both directions.

    ``grids[l] = ((hA, wA), (hB, wB))`` are level l's source/target grids;
    ``sample_rows`` gives the level's correlation rows (for ``"trg_to_src"``
    the rows of the transposed volume at target points). Keypoints ``(B, N, 2)``
    pixel ``(x, y)``; rows with NaN (or outside the image) are ignored.

    Returns ``(loss, logs)``: loss = Σ_levels Σ_directions Σ_keypoints BCE / B;
    logs hold the total, each level's share and the number of keypoints used.
    """
    b = src_kps.shape[0]
    valid = valid_keypoints(src_kps, trg_kps, src_size, trg_size)
    total = src_kps.new_zeros(())
    logs: dict[str, float] = {}
    for level, (grid_a, grid_b) in enumerate(grids):
        level_loss = src_kps.new_zeros(())
        for direction in DIRECTIONS:
            if direction == "src_to_trg":
                p_from, p_to = pixels_to_grid(src_kps, src_size, grid_a), pixels_to_grid(trg_kps, trg_size, grid_b)
                size_to = grid_b
            else:
                p_from, p_to = pixels_to_grid(trg_kps, trg_size, grid_b), pixels_to_grid(src_kps, src_size, grid_a)
                size_to = grid_a
            p_to = torch.where(valid.unsqueeze(-1), p_to, torch.zeros_like(p_to))
            rows = sample_rows(level, direction, torch.where(valid.unsqueeze(-1), p_from, torch.zeros_like(p_from)))
            bce = position_bce(rows, target_maps(p_to, size_to, sigma))
            level_loss = level_loss + torch.where(valid, bce, torch.zeros_like(bce)).sum()
        total = total + level_loss
        logs[f"loss_level{level}"] = float(level_loss.detach()) / b
    total = total / b
    logs["loss"] = float(total.detach())
    logs["keypoints"] = float(valid.sum())
    return total, logs


def volume_row_sampler(volumes: Sequence[torch.Tensor]) -> RowSampler:
    """A :data:`RowSampler` over full per-level volumes ``(B, hA, wA, hB, wB)``."""

    def sample(level: int, direction: str, points: torch.Tensor) -> torch.Tensor:
        v = volumes[level]
        return sample_volume_rows(v if direction == "src_to_trg" else v.permute(0, 3, 4, 1, 2), points)

    return sample
