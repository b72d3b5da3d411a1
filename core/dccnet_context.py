"""DCCNet's context pieces: the spatial context encoder and the dynamic fusion.

DCCNet (Huang et al., ICCV 2019) matches two feature kinds — local features
and context-aware features — each refined by NC-Net's consensus, and fuses
the two resulting scores with per-position weights predicted from the
correlations themselves.

Shapes: features ``(B, C, h, w)``; correlations ``(B, hA, wA, hB, wB)``;
fusion weights ``(B, 2, h, w)`` (channel 0: local, channel 1: context).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .ncnet_consensus import PF_PASCAL_CHANNELS, PF_PASCAL_KERNEL_SIZES, NeighConsensus, softmax_over_target
from .correlation import _check_corr, _check_features, correlation_4d, l2_normalize, transpose_corr

#: Published DCCNet settings: 25 × 25 context window, 25 × 25 fusion grid.
DEFAULT_CONTEXT_KERNEL = 25
DEFAULT_FUSION_GRID = (25, 25)


# ----------------------------------------------------------------------------- spatial context


def spatial_descriptor(feat: torch.Tensor, kernel_size: int = DEFAULT_CONTEXT_KERNEL) -> torch.Tensor:
    """Self-similarity of every cell with the cells of a ``k × k`` window around it.

    feat ``(B, C, h, w)`` → ``(B, k², h, w)``; channel ``a · k + b`` holds
    ``<f(i, j), f(i + a − k//2, j + b − k//2)>`` (row offsets outer, as in the
    public ``generate_spatial_descriptor``), 0 where the window leaves the
    grid (zero padding ``k // 2``).

    Vectorised: one self-correlation ``(B, h·w, h·w)`` (a batched matmul),
    zero-padded on its second grid and gathered at the window offsets — no
    per-pixel or per-offset loop, and no ``(B, C·k², h·w)`` unfolded copy.
    """
    _check_features(feat, "feat")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"the context window must be an odd size, got {kernel_size}")
    b, _, h, w = feat.shape
    k, p = kernel_size, kernel_size // 2
    selfcorr = correlation_4d(feat, feat)  # (B, h, w, h, w)
    padded = F.pad(selfcorr, (p, p, p, p)).reshape(b, h * w, (h + 2 * p) * (w + 2 * p))
    rows = torch.arange(h, device=feat.device).view(h, 1, 1, 1)
    cols = torch.arange(w, device=feat.device).view(1, w, 1, 1)
    da = torch.arange(k, device=feat.device).view(1, 1, k, 1)
    db = torch.arange(k, device=feat.device).view(1, 1, 1, k)
    # cell (i, j), offset (a, b) reads padded position (i + a, j + b)
    index = ((rows + da) * (w + 2 * p) + (cols + db)).reshape(1, h * w, k * k).expand(b, -1, -1)
    out = torch.gather(padded, 2, index)  # (B, h·w, k²)
    return out.transpose(1, 2).reshape(b, k * k, h, w)


class SpatialContextEncoder(nn.Module):
    """Context-aware features: local feature ⊕ its window self-similarity, embedded by a 1×1 conv.

    ``forward(feat (B, C, h, w)) -> (B, out_channels, h, w)``::

        relu(conv1x1([feat, l2norm(spatial_descriptor(feat, k))]))

    ``feat`` is taken as given: DCCNet hands it the L2-normalised backbone
    features (the public ``FeatureExtraction(normalization=True)`` output),
    so the descriptor is a cosine self-similarity and is not re-normalised
    along with the features.

    ``C + k²`` input channels (1024 + 625 for ResNet-101 ``layer3``) → ``out_channels``
    (1024 in the paper; the backbone's channel count by default). The 1×1
    conv is ``embedding.0`` (public name ``embeddingFea.0``).
    """

    def __init__(self, in_channels: int, kernel_size: int = DEFAULT_CONTEXT_KERNEL, out_channels: int | None = None):
        super().__init__()
        self.in_channels = int(in_channels)
        self.kernel_size = int(kernel_size)
        self.out_channels = int(out_channels or in_channels)
        self.embedding = nn.Sequential(
            nn.Conv2d(self.in_channels + self.kernel_size**2, self.out_channels, kernel_size=1),
            nn.ReLU(inplace=True),
        )

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        context = l2_normalize(spatial_descriptor(feat, self.kernel_size))
        return self.embedding(torch.cat([feat, context], dim=1))


# ----------------------------------------------------------------------------- dynamic fusion


def target_maps_on_grid(corr: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Every source cell's score map over the target, resampled to a fixed grid, as channels.

    corr ``(B, hA, wA, hB, wB)`` → ``(B, gh · gw, hA, wA)``: channel
    ``k · gw + l`` holds the score at target grid cell ``(k, l)``. The target
    axes are resampled bilinearly (align_corners=True, cells at
    ``linspace(-1, 1, n)``) when ``(hB, wB) != grid`` and copied exactly when
    they are equal — the published 25 × 25 case.
    """
    _check_corr(corr)
    b, ha, wa, hb, wb = corr.shape
    gh, gw = grid
    maps = corr.reshape(b * ha * wa, 1, hb, wb)
    if (hb, wb) != (gh, gw):
        maps = F.interpolate(maps, size=(gh, gw), mode="bilinear", align_corners=True)
    return maps.reshape(b, ha * wa, gh * gw).transpose(1, 2).reshape(b, gh * gw, ha, wa)


class DynamicFusion(nn.Module):
    """DCCNet's dynamic fusion of the local and the context correlation.

    ``forward(corr_local, corr_context)`` with both ``(B, hA, wA, hB, wB)`` →
    ``(fused_src_to_trg, fused_trg_to_src, weights_src, weights_trg)``:

    * each correlation is embedded by a separate :class:`NeighConsensus`
      (``embed``; PF-PASCAL: kernels 5, 5, 5, channels 16, 16, 1);
    * A→B: each embedding is read as ``(B, gh·gw, hA, wA)`` (every source
      cell's map over the target, on the fixed ``grid``, see
      :func:`target_maps_on_grid`), the two are stacked along channels, a
      1×1 conv (``attention``, ``2·gh·gw → 2``) and a softmax over the two
      channels give ``weights_src (B, 2, hA, wA)``;
    * ``fused_src_to_trg = Σ_s weights_src[:, s] · softmax_B(corr_s)``,
      ``(B, hA, wA, hB, wB)``, a distribution over target cells for every source cell;
    * B→A likewise on the transposed correlations, with the same conv:
      ``weights_trg (B, 2, hB, wB)`` and ``fused_trg_to_src (B, hB, wB, hA, wA)``.

    The public code hard-codes a 25 × 25 feature grid in the conv's input
    channels; here any grid works: maps are resampled to ``grid`` (default
    25 × 25) before the conv, which is exact at the published size.
    """

    def __init__(
        self,
        kernel_sizes: Sequence[int] = PF_PASCAL_KERNEL_SIZES,
        channels: Sequence[int] = PF_PASCAL_CHANNELS,
        grid: tuple[int, int] | int = DEFAULT_FUSION_GRID,
        symmetric: bool = True,
    ):
        super().__init__()
        self.grid = (int(grid), int(grid)) if isinstance(grid, int) else (int(grid[0]), int(grid[1]))
        self.embed = NeighConsensus(kernel_sizes, channels, symmetric)
        self.attention = nn.Conv2d(2 * self.grid[0] * self.grid[1], 2, kernel_size=1)

    def weights(self, embed_local: torch.Tensor, embed_context: torch.Tensor) -> torch.Tensor:
        """Per-source-cell branch weights ``(B, 2, hA, wA)`` from two embeddings ``(B, hA, wA, hB, wB)``."""
        stacked = torch.cat(
            [target_maps_on_grid(embed_local, self.grid), target_maps_on_grid(embed_context, self.grid)], dim=1
        )
        return torch.softmax(self.attention(stacked), dim=1)

    def forward(
        self, corr_local: torch.Tensor, corr_context: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        if corr_local.shape != corr_context.shape:
            raise ValueError(f"correlations differ in shape: {tuple(corr_local.shape)} vs {tuple(corr_context.shape)}")
        b = corr_local.shape[0]
        embedded = self.embed(torch.cat([corr_local, corr_context], dim=0))  # one pass for both
        embed_local, embed_context = embedded[:b], embedded[b:]
        w_src = self.weights(embed_local, embed_context)
        w_trg = self.weights(transpose_corr(embed_local), transpose_corr(embed_context))
        fused_src = fuse_scores(w_src, [softmax_over_target(corr_local), softmax_over_target(corr_context)])
        fused_trg = fuse_scores(
            w_trg,
            [softmax_over_target(transpose_corr(corr_local)), softmax_over_target(transpose_corr(corr_context))],
        )
        return fused_src, fused_trg, w_src, w_trg


def fuse_scores(weights: torch.Tensor, scores: Sequence[torch.Tensor]) -> torch.Tensor:
    """``Σ_s weights[:, s] · scores[s]``: weights ``(B, S, hA, wA)``, scores ``S × (B, hA, wA, hB, wB)``."""
    if weights.shape[1] != len(scores):
        raise ValueError(f"{weights.shape[1]} weights for {len(scores)} scores")
    return sum(weights[:, s, :, :, None, None] * sc for s, sc in enumerate(scores))  # type: ignore[return-value]
