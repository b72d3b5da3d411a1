"""NC-Net's correlation refinement: mutual matching and neighbourhood consensus.

Correlations are ``(B, hA, wA, hB, wB)`` (see :mod:`semcorr.correlation`); the
4D convolutions inside :class:`NeighConsensus` work on ``(B, C, hA, wA, hB, wB)``.

The pipeline of NC-Net (Rocco et al., NeurIPS 2018), shared by DCCNet, is
:class:`ConsensusRefinement`: ``MutualMatching → NeighConsensus → MutualMatching``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from .conv4d import Conv4d
from .correlation import _check_corr

#: PF-PASCAL configuration of the published NC-Net and DCCNet models.
PF_PASCAL_KERNEL_SIZES = (5, 5, 5)
PF_PASCAL_CHANNELS = (16, 16, 1)


def _transpose_4d(x: torch.Tensor) -> torch.Tensor:
    """Swap source and target axes of ``(B, C, hA, wA, hB, wB)`` → ``(B, C, hB, wB, hA, wA)``."""
    return x.permute(0, 1, 4, 5, 2, 3)


def mutual_matching(corr: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Soft mutual nearest-neighbour filtering (NC-Net's ``MutualMatching``).

    corr ``(B, hA, wA, hB, wB)`` → same shape::

        c · ((c / (max_A + eps)) · (c / (max_B + eps)))

    where ``max_A[b, i, j]`` is the best score of source cell ``(i, j)`` over all
    target cells and ``max_B[b, k, l]`` the best score of target cell ``(k, l)``
    over all source cells. The product of the two ratios is taken first, as the
    public code does ("parenthesis are important for symmetric output"), so
    the result of the transposed input is exactly the transposed result.
    """
    _check_corr(corr)
    b, ha, wa, hb, wb = corr.shape
    flat = corr.reshape(b, ha * wa, hb * wb)
    max_over_trg = flat.max(dim=2, keepdim=True).values  # best match of each source cell
    max_over_src = flat.max(dim=1, keepdim=True).values  # best match of each target cell
    ratio_src = flat / (max_over_trg + eps)
    ratio_trg = flat / (max_over_src + eps)
    return (flat * (ratio_src * ratio_trg)).view(b, ha, wa, hb, wb)


def softmax_over_target(corr: torch.Tensor) -> torch.Tensor:
    """Each source cell's scores → a distribution over all target cells: ``(B, hA, wA, hB, wB)`` → same."""
    _check_corr(corr)
    b, ha, wa, hb, wb = corr.shape
    return torch.softmax(corr.reshape(b, ha, wa, hb * wb), dim=-1).view(b, ha, wa, hb, wb)


class MutualMatching(nn.Module):
    """Module form of :func:`mutual_matching` (no parameters)."""

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps = eps

    def forward(self, corr: torch.Tensor) -> torch.Tensor:
        return mutual_matching(corr, self.eps)


class NeighConsensus(nn.Module):
    """Stacked 4D convolutions, each followed by a ReLU (the last one too).

    ``forward(corr (B, hA, wA, hB, wB)) -> (B, hA, wA, hB, wB)``; the last
    layer must have one channel. Symmetric mode computes
    ``conv(C) + conv(Cᵀ)ᵀ`` where ᵀ swaps the source and target axes, so
    swapping the images swaps the output's axes.

    Layers are ``conv.0, conv.2, …`` (ReLUs in between), as in the public
    code, so checkpoints map one to one.
    """

    def __init__(
        self,
        kernel_sizes: Sequence[int] = PF_PASCAL_KERNEL_SIZES,
        channels: Sequence[int] = PF_PASCAL_CHANNELS,
        symmetric: bool = True,
    ):
        super().__init__()
        kernel_sizes, channels = [int(k) for k in kernel_sizes], [int(c) for c in channels]
        if not kernel_sizes or len(kernel_sizes) != len(channels):
            raise ValueError(f"kernel_sizes {kernel_sizes} and channels {channels} must be non-empty and of equal length")
        if channels[-1] != 1:
            raise ValueError(f"the last NeighConsensus layer must have 1 channel, not {channels[-1]}")
        if any(k < 1 or k % 2 == 0 for k in kernel_sizes):
            raise ValueError(f"NeighConsensus kernel sizes must be odd, got {kernel_sizes}")
        self.kernel_sizes = kernel_sizes
        self.channels = channels
        self.symmetric = bool(symmetric)
        layers: list[nn.Module] = []
        c_in = 1
        for k, c_out in zip(kernel_sizes, channels):
            layers += [Conv4d(c_in, c_out, k, bias=True), nn.ReLU(inplace=True)]
            c_in = c_out
        self.conv = nn.Sequential(*layers)

    def filter(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution stack alone: ``(B, 1, hA, wA, hB, wB)`` → ``(B, 1, hA, wA, hB, wB)``."""
        return self.conv(x)

    def forward(self, corr: torch.Tensor) -> torch.Tensor:
        _check_corr(corr)
        x = corr.unsqueeze(1)
        if not self.symmetric:
            return self.filter(x).squeeze(1)
        xt = _transpose_4d(x)
        if x.shape == xt.shape:
            # both orderings in one batch: one pass through the stack instead of two
            b = x.shape[0]
            y = self.filter(torch.cat([x, xt], dim=0))
            out = y[:b] + _transpose_4d(y[b:])
        else:
            out = self.filter(x) + _transpose_4d(self.filter(xt))
        return out.squeeze(1)


class ConsensusRefinement(nn.Module):
    """NC-Net's refinement of a raw correlation: MutualMatching → NeighConsensus → MutualMatching.

    ``forward(corr (B, hA, wA, hB, wB)) -> (B, hA, wA, hB, wB)``. The
    neighbourhood-consensus weights live in ``self.neigh_consensus``.
    """

    def __init__(
        self,
        kernel_sizes: Sequence[int] = PF_PASCAL_KERNEL_SIZES,
        channels: Sequence[int] = PF_PASCAL_CHANNELS,
        symmetric: bool = True,
    ):
        super().__init__()
        self.neigh_consensus = NeighConsensus(kernel_sizes, channels, symmetric)

    def forward(self, corr: torch.Tensor) -> torch.Tensor:
        return mutual_matching(self.neigh_consensus(mutual_matching(corr)))
