"""Dense 4D correlation between two feature maps.

Shapes: features ``(B, C, h, w)``; a correlation volume is
``(B, hA, wA, hB, wB)``: entry ``[b, i, j, k, l]`` scores source cell ``(i, j)``
against target cell ``(k, l)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def _check_features(x: torch.Tensor, name: str) -> None:
    if x.dim() != 4:
        raise ValueError(f"{name} must be (B, C, h, w), got shape {tuple(x.shape)}")


def _check_corr(corr: torch.Tensor) -> None:
    if corr.dim() != 5:
        raise ValueError(f"correlation must be (B, hA, wA, hB, wB), got shape {tuple(corr.shape)}")


def l2_normalize(x: torch.Tensor, dim: int = 1, eps: float = 1e-6) -> torch.Tensor:
    """``x / sqrt(sum(x**2, dim) + eps)`` (NC-Net's and SFNet's feature normalisation)."""
    return x / torch.sqrt(torch.sum(x * x, dim=dim, keepdim=True) + eps)


def correlation_4d(feat_a: torch.Tensor, feat_b: torch.Tensor) -> torch.Tensor:
    """Dot products of every source cell with every target cell.

    feat_a: ``(B, C, hA, wA)``, feat_b: ``(B, C, hB, wB)`` → ``(B, hA, wA, hB, wB)``.
    """
    _check_features(feat_a, "feat_a")
    _check_features(feat_b, "feat_b")
    if feat_a.shape[:2] != feat_b.shape[:2]:
        raise ValueError(
            f"feature batch/channels differ: {tuple(feat_a.shape[:2])} vs {tuple(feat_b.shape[:2])}"
        )
    b, c, ha, wa = feat_a.shape
    hb, wb = feat_b.shape[2:]
    corr = torch.bmm(feat_a.reshape(b, c, ha * wa).transpose(1, 2), feat_b.reshape(b, c, hb * wb))
    return corr.view(b, ha, wa, hb, wb)


def transpose_corr(corr: torch.Tensor) -> torch.Tensor:
    """Swap source and target axes: ``(B, hA, wA, hB, wB)`` → ``(B, hB, wB, hA, wA)``."""
    _check_corr(corr)
    return corr.permute(0, 3, 4, 1, 2)


def resize_features(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (align_corners=True) resize of ``(B, C, h, w)`` features to ``size``."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def center_features(x: torch.Tensor) -> torch.Tensor:
    """Subtract each channel's mean over the image: ``(B, C, h, w)`` → same.

    Removes the component every position shares, so cosine scores measure
    what distinguishes positions (a cheap, training-free gain for matching).
    """
    return x - x.mean(dim=(2, 3), keepdim=True)


def hypercolumn(features: Sequence[torch.Tensor], size: tuple[int, int] | None = None, center: bool = False) -> torch.Tensor:
    """Concatenate per-layer L2-normalised features at one resolution.

    features: list of ``(B, C_i, h_i, w_i)`` → ``(B, ΣC_i, h, w)`` where ``(h, w)``
    is ``size`` or the finest input grid. Each layer is (optionally centred,
    then) normalised separately so no layer dominates the dot product; the
    result is scaled by ``1/sqrt(n_layers)`` so it has unit norm.
    """
    if not features:
        raise ValueError("hypercolumn needs at least one feature map")
    if size is None:
        size = max((tuple(f.shape[-2:]) for f in features), key=lambda s: s[0] * s[1])
    parts = []
    for f in features:
        f = resize_features(f, size)
        parts.append(l2_normalize(center_features(f) if center else f))
    return torch.cat(parts, dim=1) / len(features) ** 0.5


def correlate(
    feats_a: Sequence[torch.Tensor],
    feats_b: Sequence[torch.Tensor],
    mode: str = "hypercolumn",
    normalize: bool = True,
    relu: bool = False,
    center: bool = False,
) -> torch.Tensor:
    """Correlation of one or several feature layers.

    feats_a / feats_b: lists of ``(B, C_i, h_i, w_i)``, one entry per layer.

    * ``mode="hypercolumn"``: layers resized to the finest grid, each
      L2-normalised, concatenated, one correlation (normalised by the number
      of layers so scores stay in [-1, 1]).
    * ``mode="product"``: one correlation per layer (each resized to the finest
      grid), multiplied element-wise — SFNet's multi-layer matching.

    ``normalize`` L2-normalises features before the dot product; ``center``
    first subtracts each channel's image mean; ``relu`` clamps negative
    scores. Returns ``(B, hA, wA, hB, wB)``.
    """
    if len(feats_a) != len(feats_b) or not feats_a:
        raise ValueError("correlate needs the same, non-zero number of layers on both sides")
    size_a = max((tuple(f.shape[-2:]) for f in feats_a), key=lambda s: s[0] * s[1])
    size_b = max((tuple(f.shape[-2:]) for f in feats_b), key=lambda s: s[0] * s[1])
    if mode == "hypercolumn":
        if normalize:
            corr = correlation_4d(hypercolumn(feats_a, size_a, center), hypercolumn(feats_b, size_b, center))
        else:
            fa = torch.cat([resize_features(f, size_a) for f in feats_a], dim=1)
            fb = torch.cat([resize_features(f, size_b) for f in feats_b], dim=1)
            if center:
                fa, fb = center_features(fa), center_features(fb)
            corr = correlation_4d(fa, fb)
        return corr.clamp_min(0) if relu else corr
    if mode == "product":
        corr = None
        for fa, fb in zip(feats_a, feats_b):
            fa = resize_features(fa, size_a)
            fb = resize_features(fb, size_b)
            if center:
                fa, fb = center_features(fa), center_features(fb)
            if normalize:
                fa, fb = l2_normalize(fa), l2_normalize(fb)
            c = correlation_4d(fa, fb)
            if relu:
                c = c.clamp_min(0)
            corr = c if corr is None else corr * c
        return corr
    raise ValueError(f"unknown correlation mode {mode!r} (use 'hypercolumn' or 'product')")


def normalize_over_target(corr: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """L2-normalise the scores of each source cell over all target cells.

    ``(B, hA, wA, hB, wB)`` → same shape (SFNet's normalisation before soft-argmax).
    """
    _check_corr(corr)
    b, ha, wa, hb, wb = corr.shape
    flat = corr.reshape(b, ha, wa, hb * wb)
    flat = flat / torch.sqrt((flat * flat).sum(-1, keepdim=True) + eps)
    return flat.view(b, ha, wa, hb, wb)


def mutual_nn_mask(corr: torch.Tensor) -> torch.Tensor:
    """Boolean ``(B, hA, wA, hB, wB)``: true where the pair is each other's best match."""
    _check_corr(corr)
    b, ha, wa, hb, wb = corr.shape
    flat = corr.reshape(b, ha * wa, hb * wb)
    best_for_src = flat == flat.max(dim=2, keepdim=True).values
    best_for_trg = flat == flat.max(dim=1, keepdim=True).values
    return (best_for_src & best_for_trg).view(b, ha, wa, hb, wb)
