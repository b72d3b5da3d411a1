"""From a correlation volume to matches, and from matches to dense flow.

A *match grid* ``(B, h, w, 2)`` holds, for every cell of the source feature
grid, the normalised ``(x, y)`` of its match in the target (see
:mod:`semcorr.geometry`). A *flow* ``(B, H, W, 2)`` holds, for every pixel of the
original source image, the absolute pixel ``(x, y)`` of its match in the
original target image — the ``flow/src_to_trg`` dataset of the record format.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .correlation import _check_corr, mutual_nn_mask, normalize_over_target, transpose_corr
from .geometry import cell_centers, normalized_to_pixels

METHODS = ("argmax", "soft-argmax", "kernel-soft-argmax")


def _flat_target(corr: torch.Tensor) -> torch.Tensor:
    b, ha, wa, hb, wb = corr.shape
    return corr.reshape(b, ha, wa, hb * wb)


def _expected_position(prob: torch.Tensor, hb: int, wb: int, normalise: bool = False) -> torch.Tensor:
    """prob ``(B, hA, wA, hB*wB)`` summing to 1 → expected normalised ``(x, y)`` ``(B, hA, wA, 2)``.

    ``normalise``: ``prob`` holds unnormalised weights; their total, summed
    from the column marginal, is divided out at the end.
    """
    b, ha, wa, _ = prob.shape
    p = prob.view(b, ha, wa, hb, wb)
    over_x, over_y = p.sum(dim=3), p.sum(dim=4)  # (B, hA, wA, wB), (B, hA, wA, hB)
    x = (over_x * cell_centers(wb, prob.device, prob.dtype)).sum(-1)
    y = (over_y * cell_centers(hb, prob.device, prob.dtype)).sum(-1)
    if normalise:
        total = over_x.sum(dim=-1)
        x, y = x / total, y / total
    return torch.stack([x, y], dim=-1)


def argmax_matches(corr: torch.Tensor) -> torch.Tensor:
    """Best target cell for every source cell.

    corr ``(B, hA, wA, hB, wB)`` → normalised target coordinates ``(B, hA, wA, 2)``.
    """
    _check_corr(corr)
    b, ha, wa, hb, wb = corr.shape
    idx = _flat_target(corr).argmax(dim=-1)
    xs = cell_centers(wb, corr.device, corr.dtype)
    ys = cell_centers(hb, corr.device, corr.dtype)
    return torch.stack([xs[idx % wb], ys[idx // wb]], dim=-1)


def softmax_with_temperature(x: torch.Tensor, beta: float, dim: int = -1) -> torch.Tensor:
    """``exp(β (x − max x)) / Σ exp(β (x − max x))`` along ``dim`` (SFNet's stable softmax)."""
    x = x - x.max(dim=dim, keepdim=True).values
    e = torch.exp(beta * x)
    return e / e.sum(dim=dim, keepdim=True)


def soft_argmax_matches(corr: torch.Tensor, beta: float = 50.0) -> torch.Tensor:
    """Expected target position under ``softmax(β · corr)`` over all target cells.

    corr ``(B, hA, wA, hB, wB)`` → ``(B, hA, wA, 2)`` normalised coordinates.
    """
    _check_corr(corr)
    hb, wb = corr.shape[3:]
    return _expected_position(softmax_with_temperature(_flat_target(corr), beta), hb, wb)


def _argmax_cells(corr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row and column of each source cell's best target cell, as ``(B, hA, wA, 1, 1)`` floats
    (no gradient), with the target's row and column indices ``(1, 1, 1, hB, 1)``, ``(1, 1, 1, 1, wB)``."""
    b, ha, wa, hb, wb = corr.shape
    with torch.no_grad():
        idx = _flat_target(corr).argmax(dim=-1)
        iy = (idx // wb).to(corr.dtype).view(b, ha, wa, 1, 1)
        ix = (idx % wb).to(corr.dtype).view(b, ha, wa, 1, 1)
    ys = torch.arange(hb, device=corr.device, dtype=corr.dtype).view(1, 1, 1, hb, 1)
    xs = torch.arange(wb, device=corr.device, dtype=corr.dtype).view(1, 1, 1, 1, wb)
    return iy, ix, ys, xs


def gaussian_window(corr: torch.Tensor, sigma: float = 5.0) -> torch.Tensor:
    """Gaussian weights ``(B, hA, wA, hB, wB)`` centred on each source cell's argmax.

    The window is measured in target *cells* (std ``sigma``); the argmax
    carries no gradient.
    """
    _check_corr(corr)
    iy, ix, ys, xs = _argmax_cells(corr)
    return torch.exp(-((xs - ix) ** 2 + (ys - iy) ** 2) / (2.0 * sigma**2))


def _kernel_soft_argmax_inference(corr: torch.Tensor, beta: float, sigma: float) -> torch.Tensor:
    """:func:`kernel_soft_argmax_matches` without autograd, in fewer passes over the volume.

    The same expectation, rearranged: the Gaussian window as the product of
    its row and column factors (never built at full size), the softmax's
    exponentials taken in place and left unnormalised, their sum divided out
    of the two marginals at the end. About half the passes over
    ``(B, hA, wA, hB, wB)`` and no temporary volumes beyond one, so the
    ``flow`` stage (this is its default method) spends 2–3× less time here;
    equal to the autograd route up to float rounding (~1e-7 of the grid).
    corr ``(B, hA, wA, hB, wB)`` → ``(B, hA, wA, 2)`` normalised coordinates.
    """
    b, ha, wa, hb, wb = corr.shape
    corr = corr.contiguous()  # the target→source direction arrives as a transposed view
    iy, ix, ys, xs = _argmax_cells(corr)
    scale = -1.0 / (2.0 * sigma**2)
    weights = corr * torch.exp((ys - iy) ** 2 * scale)
    weights.mul_(torch.exp((xs - ix) ** 2 * scale))
    flat = weights.view(b, ha, wa, hb * wb)
    flat.sub_(flat.max(dim=-1, keepdim=True).values).mul_(beta).exp_()
    return _expected_position(flat, hb, wb, normalise=True)


def kernel_soft_argmax_matches(
    corr: torch.Tensor, beta: float | None = 50.0, sigma: float = 5.0, normalize: bool = False
) -> torch.Tensor:
    """SFNet's kernel soft-argmax.

    Scores (optionally L2-normalised over the target cells first, as SFNet's
    model does with ``normalize=True``; L2-normalising twice changes nothing) are multiplied
    by a Gaussian window (std ``sigma`` cells) around the discrete argmax,
    passed through a softmax with temperature ``beta`` and reduced to the
    expected position. ``beta=None`` returns the discrete argmax. Without
    autograd it takes :func:`_kernel_soft_argmax_inference`, the same sum in
    fewer passes; training keeps this literal form.

    corr ``(B, hA, wA, hB, wB)`` → ``(B, hA, wA, 2)`` normalised coordinates.
    """
    _check_corr(corr)
    if beta is None:
        return argmax_matches(corr)
    if normalize:
        corr = normalize_over_target(corr)
    if not (torch.is_grad_enabled() and corr.requires_grad):
        return _kernel_soft_argmax_inference(corr, beta, sigma)
    hb, wb = corr.shape[3:]
    windowed = corr * gaussian_window(corr, sigma)
    return _expected_position(softmax_with_temperature(_flat_target(windowed), beta), hb, wb)


def match_confidence(corr: torch.Tensor) -> torch.Tensor:
    """Best score of every source cell: ``(B, hA, wA, hB, wB)`` → ``(B, hA, wA)``."""
    _check_corr(corr)
    return _flat_target(corr).max(dim=-1).values


def mutual_filter(corr: torch.Tensor) -> torch.Tensor:
    """Keep only mutual nearest-neighbour scores of ``(B, hA, wA, hB, wB)``.

    Scores that are not mutual become the row's minimum, so a source cell with
    a mutual match can only match it; a source cell without one keeps all its
    scores (it falls back to its own argmax).
    """
    _check_corr(corr)
    b, ha, wa, hb, wb = corr.shape
    mask = mutual_nn_mask(corr).reshape(b, ha, wa, hb * wb)
    flat = corr.reshape(b, ha, wa, hb * wb)
    floor = flat.min(dim=-1, keepdim=True).values.expand_as(flat)
    filtered = torch.where(mask, flat, floor)
    has_mutual = mask.any(dim=-1, keepdim=True)
    return torch.where(has_mutual, filtered, flat).view(b, ha, wa, hb, wb)


def matches_from_corr(
    corr: torch.Tensor,
    method: str = "kernel-soft-argmax",
    beta: float = 50.0,
    sigma: float = 5.0,
    mutual: bool = False,
    normalize: bool = False,
    corr_t: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Matches in both directions from one correlation volume.

    corr ``(B, hA, wA, hB, wB)`` → ``(src_to_trg (B, hA, wA, 2), trg_to_src (B, hB, wB, 2))``.
    ``corr_t`` ``(B, hB, wB, hA, wA)``: the target→source scores when they are
    not the transpose of ``corr`` (DCCNet's two merges); default the transpose.
    The soft methods apply their temperature ``beta`` to the scores as given
    (cosine similarities when the features were L2-normalised);
    ``normalize`` first L2-normalises each cell's scores over the other
    image's cells (SFNet's normalisation).
    ``mutual`` keeps only mutual nearest-neighbour scores (:func:`mutual_filter`)
    before matching, in each direction.
    """
    if method not in METHODS:
        raise ValueError(f"unknown matching method {method!r}; choose one of {', '.join(METHODS)}")
    if corr_t is not None and corr_t.shape != transpose_corr(corr).shape:
        raise ValueError(f"target→source scores of shape {tuple(corr_t.shape)} do not fit corr {tuple(corr.shape)}")
    out = []
    for c in (corr, transpose_corr(corr) if corr_t is None else corr_t):
        if mutual:
            c = mutual_filter(c)
        if method == "argmax":
            out.append(argmax_matches(c))
        elif method == "soft-argmax":
            out.append(soft_argmax_matches(normalize_over_target(c) if normalize else c, beta))
        else:
            out.append(kernel_soft_argmax_matches(c, beta, sigma, normalize=normalize))
    return out[0], out[1]


def matches_to_flow(
    matches: torch.Tensor, src_size: tuple[int, int], trg_size: tuple[int, int]
) -> torch.Tensor:
    """Dense pixel flow at the original source resolution.

    matches ``(B, h, w, 2)`` (normalised target coordinates per source cell) →
    ``(B, H_src, W_src, 2)`` absolute pixel ``(x, y)`` in the target image of
    size ``trg_size = (H_trg, W_trg)``. The match grid is upsampled bilinearly
    with cell centres at the image's normalised coordinates (align_corners).
    """
    if matches.dim() != 4 or matches.shape[-1] != 2:
        raise ValueError(f"matches must be (B, h, w, 2), got {tuple(matches.shape)}")
    grid = matches.permute(0, 3, 1, 2)
    if tuple(grid.shape[-2:]) != tuple(src_size):
        grid = F.interpolate(grid, size=tuple(src_size), mode="bilinear", align_corners=True)
    return normalized_to_pixels(grid.permute(0, 2, 3, 1), trg_size)
