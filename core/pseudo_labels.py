"""Pseudo keypoints: confident training-free matches as labels for a keypoint-supervised model.

A model trained with keypoints (MMNet) can learn from unannotated same-class
pairs when a *teacher* supplies the keypoints: any scores ``(B, hA, wA, hB,
wB)`` — :func:`teacher_scores`, the project's training-free matcher
(``semcorr evaluate --model nn``: centred hypercolumn features, cosine
correlation, NC-Net's soft mutual filter), or a trained model's correlation
(MMNet's ``teacher=ncnet``). Mutual nearest neighbours — source and target
cells that are each other's best match — are much more often right than the
matches as a whole, and the most confident of them become the pair's
keypoints. Cells near the grid's
border are left out: zero padding makes border cells of any two images look
alike (and plain backgrounds match themselves there), so their mutual matches
are mostly position-locked artefacts.

Pure functions on tensors; coordinates follow the project's ``align_corners``
convention: cell ``j`` of a ``w``-cell grid is pixel ``j·(W−1)/(w−1)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .scores import correlate_scores


def teacher_scores(feats_a: Sequence[torch.Tensor], feats_b: Sequence[torch.Tensor]) -> torch.Tensor:
    """The ``nn`` matcher's scores: lists of ``(B, C_i, h_i, w_i)`` → ``(B, hA, wA, hB, wB)``.

    Centred, per-layer L2-normalised hypercolumns on each side's finest grid,
    cosine correlation, negative scores clamped, soft mutual filtering.
    """
    return correlate_scores(list(feats_a), list(feats_b), center=True, mutual_matching=True)


def _cells_to_pixels(index: torch.Tensor, grid: tuple[int, int], image: tuple[int, int]) -> torch.Tensor:
    """Flat cell indices ``(...)`` of an ``(h, w)`` grid → pixel ``(x, y)`` ``(..., 2)`` in an ``(H, W)`` image."""
    (h, w), (hh, ww) = grid, image
    x = (index % w).float() * ((ww - 1) / max(w - 1, 1))
    y = torch.div(index, w, rounding_mode="floor").float() * ((hh - 1) / max(h - 1, 1))
    return torch.stack([x, y], dim=-1)


def _inner_cells(grid: tuple[int, int], margin: int, device) -> torch.Tensor:
    """Flat bool ``(h·w,)``: cells at least ``margin`` cells away from the grid's border."""
    h, w = grid
    y, x = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    inner = (x >= margin) & (x <= w - 1 - margin) & (y >= margin) & (y <= h - 1 - margin)
    return inner.reshape(-1)


def mutual_nn_keypoints(
    corr: torch.Tensor, src_size: tuple[int, int], trg_size: tuple[int, int], max_points: int, margin: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``max_points`` best-scoring mutual nearest neighbours of each pair as keypoints.

    Matches with either end within ``margin`` cells of its grid's border are
    not used (``margin=0`` keeps all).

    corr ``(B, hA, wA, hB, wB)``; ``src_size`` / ``trg_size`` the images'
    ``(H, W)``. Returns ``(src_kps, trg_kps)``, each ``(B, max_points, 2)``
    pixel ``(x, y)``, ordered by decreasing score; rows past a pair's number
    of mutual matches with a positive score are NaN (losses skip them).
    """
    if corr.dim() != 5:
        raise ValueError(f"expected scores (B, hA, wA, hB, wB), got shape {tuple(corr.shape)}")
    if margin < 0:
        raise ValueError(f"margin must be at least 0, got {margin}")
    if max_points < 1:
        raise ValueError(f"max_points must be at least 1, got {max_points}")
    b, ha, wa, hb, wb = corr.shape
    flat = corr.reshape(b, ha * wa, hb * wb)
    best_score, best_trg = flat.max(dim=2)  # (B, nA)
    best_src = flat.argmax(dim=1)  # (B, nB)
    mutual = torch.gather(best_src, 1, best_trg) == torch.arange(ha * wa, device=corr.device)
    inner = _inner_cells((ha, wa), margin, corr.device)[None] & _inner_cells((hb, wb), margin, corr.device)[best_trg]
    score = torch.where(mutual & inner & (best_score > 0), best_score, torch.full_like(best_score, -1.0))
    k = min(max_points, ha * wa)
    top_score, top_src = score.topk(k, dim=1)  # sorted, descending
    top_trg = torch.gather(best_trg, 1, top_src)
    src = _cells_to_pixels(top_src, (ha, wa), src_size)
    trg = _cells_to_pixels(top_trg, (hb, wb), trg_size)
    keep = (top_score > 0).unsqueeze(-1)
    nan = torch.full_like(src, float("nan"))
    src, trg = torch.where(keep, src, nan), torch.where(keep, trg, nan)
    if k < max_points:
        pad = torch.full((b, max_points - k, 2), float("nan"), device=corr.device)
        src, trg = torch.cat([src, pad], 1), torch.cat([trg, pad], 1)
    return src, trg


__all__ = ["teacher_scores", "mutual_nn_keypoints"]
