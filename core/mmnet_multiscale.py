"""MMNet's multi-scale pieces: feature enhancement and coarse-to-fine 4D correlation.

Zhao et al., "Multi-scale Matching Networks for Semantic Correspondence"
(ICCV 2021). Every piece works on a list of *levels*, finest first (level 0 is
the stride-4 stage of a ResNet or MobileNetV2); a 21-channel map per level is
what the correlation consumes.

Feature side (learned):

* :class:`ScaleEnhancement` — one backbone block → 21 channels (BDCN's
  multi-dilation block followed by a 1×1 reduction);
* :class:`StageEnhancement` — the sum of its blocks' enhanced maps;
* :class:`LocalSelfAttention` — 3×3 cosine self-attention with a residual (no activation);
* :class:`TopDownFusion` — coarse-to-fine fusion of the stage maps.

Matching side (no parameters):

* :func:`upsample_4d` — nearest (public code) or bicubic (paper) resampling of
  a ``(B, hA, wA, hB, wB)`` volume in all four dimensions;
* :func:`coarse_to_fine_volumes` — ``S_l = S̃_l + U(S_{l+1})`` with the coarser
  term detached, from the coarsest level down to a stop level;
* :func:`correlation_rows` — rows of ``S_l`` at fractional source points
  without building the level's volume (training loss, visualisation);
* :func:`chunked_matches` — matches at a level whose volume is too large to
  hold, computed a block of source cells at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .correlation import correlation_4d
from .errors import UsageError

#: Channels of every enhanced map (RCF/BDCN's side-output width).
MAP_CHANNELS = 21
UPSAMPLE_MODES = ("nearest", "bicubic")


# ============================================================================ feature enhancement


def init_conv_weights(module: nn.Module, std: float = 0.01) -> None:
    """BDCN's initialisation of the head: every ``Conv2d`` weight ~ N(0, std²), biases zero."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ScaleEnhancement(nn.Module):
    """Intra-scale enhancement of one backbone block (BDCN's ``MSBlock`` + its 1×1 ``_down`` conv).

    ``o = relu(conv3x3(x))``; ``o_k = relu(conv3x3_dilated(o))`` for dilations
    ``rate·(1, 2, 3)`` = 4, 8, 12; output ``conv1x1(o + o1 + o2 + o3)``.

    x ``(B, C_in, h, w)`` → ``(B, 21, h, w)``.
    """

    def __init__(self, in_channels: int, mid_channels: int = 32, out_channels: int = MAP_CHANNELS, rate: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, mid_channels, 3, padding=1)
        self.dilated = nn.ModuleList(
            nn.Conv2d(mid_channels, mid_channels, 3, padding=rate * k, dilation=rate * k) for k in (1, 2, 3)
        )
        self.down = nn.Conv2d(mid_channels, out_channels, 1)
        init_conv_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(self.conv(x))
        total = o
        for conv in self.dilated:
            total = total + F.relu(conv(o))
        return self.down(total)


class StageEnhancement(nn.Module):
    """Sum of the enhanced maps of every block of one stage.

    feats: list of ``(B, C_i, h, w)`` (one per block, same grid) → ``(B, 21, h, w)``.
    """

    def __init__(self, in_channels: Sequence[int], rate: int = 4):
        super().__init__()
        if not in_channels:
            raise ValueError("a stage needs at least one block")
        self.blocks = nn.ModuleList(ScaleEnhancement(c, rate=rate) for c in in_channels)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(feats) != len(self.blocks):
            raise ValueError(f"stage has {len(self.blocks)} blocks, got {len(feats)} feature maps")
        out = self.blocks[0](feats[0])
        for block, f in zip(self.blocks[1:], feats[1:]):
            out = out + block(f)
        return out


def neighbourhood_3x3(x: torch.Tensor) -> torch.Tensor:
    """The 9 neighbours of every cell, borders replicated.

    x ``(B, C, h, w)`` → ``(B, C, 9, h, w)``; index 4 is the cell itself,
    neighbours in raster order (dy, dx) from (-1, -1) to (1, 1).
    """
    b, c, h, w = x.shape
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return F.unfold(padded, kernel_size=3).view(b, c, 9, h, w)


def unit_vectors(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Each cell's channel vector over its norm clamped at ``eps`` (``F.cosine_similarity``'s rule): ``(B, C, h, w)`` → same."""
    return x / torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(eps)


class LocalSelfAttention(nn.Module):
    """Self-attention over each cell's 3×3 neighbourhood, added back to the input (MMNet's ``WeightAverage``).

    As the public code computes it: ``θ, φ, g = conv1x1(x)`` (21 → 10, no
    activation); weights ``softmax_9(cos(θ, φ_n))`` over the 9 neighbours
    (borders replicated; ``F.cosine_similarity``, eps 1e-8); output
    ``x + conv1x1(Σ_n a_n g_n)`` (10 → 21). Parameters ``query`` / ``key`` /
    ``value`` / ``out`` are the public ``conv_theta`` / ``conv_phi`` /
    ``conv_g`` / ``conv_back``.

    x ``(B, 21, h, w)`` → ``(B, 21, h, w)``.
    """

    def __init__(self, channels: int = MAP_CHANNELS, inner_channels: int | None = None, eps: float = 1e-8):
        super().__init__()
        inner = channels // 2 if inner_channels is None else inner_channels
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, inner, 1)
        self.out = nn.Conv2d(inner, channels, 1)
        self.eps = eps
        init_conv_weights(self)

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax weights of the 9 neighbours: ``(B, 21, h, w)`` → ``(B, 9, h, w)``.

        ``F.cosine_similarity`` divides each vector by its norm (clamped at
        ``eps``) and sums the products; the norms are taken here once per cell,
        before the 9-fold neighbourhood copy (replicated borders copy the
        normalised cells), which is the same arithmetic on 9× fewer norms.
        """
        q = unit_vectors(self.query(x), self.eps).unsqueeze(2)  # (B, c, 1, h, w)
        k = neighbourhood_3x3(unit_vectors(self.key(x), self.eps))  # (B, c, 9, h, w)
        return torch.softmax((k * q).sum(1), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.attention_weights(x)
        v = neighbourhood_3x3(self.value(x))
        return x + self.out((a.unsqueeze(1) * v).sum(2))


def fit_to_grid(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Crop (bottom/right) or replicate-pad ``(B, C, h, w)`` to ``size`` (odd grids after a ×2 upsampling)."""
    h, w = x.shape[-2:]
    th, tw = size
    x = x[..., : min(h, th), : min(w, tw)]
    if h < th or w < tw:
        x = F.pad(x, (0, max(tw - w, 0), 0, max(th - h, 0)), mode="replicate")
    return x


def bilinear_upsampling_kernel(channels: int, kernel_size: int = 4) -> torch.Tensor:
    """Per-channel bilinear kernel ``(C, C, k, k)`` for a ``ConvTranspose2d`` (FCN's initialisation)."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float32)
    filt1d = 1 - (og - center).abs() / factor
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    weight[range(channels), range(channels)] = filt1d[:, None] * filt1d[None, :]
    return weight


class TopDownFusion(nn.Module):
    """Cross-scale enhancement, from the coarsest level to the finest.

    ``F_L = A_L``; ``F_l = conv3x3(cat[A_l, up(F_{l+1})])`` (42 → 21: the level's
    own map first, as the public code concatenates ``(sum_l, upsampled sum_{l+1})``) where ``up``
    is a ``ConvTranspose2d(21, 21, 4, stride=2, padding=1, bias=False)`` when the
    coarser level has twice the stride, and nothing when both share a stride
    (dilated backbones). The upsampled map is cropped/padded to the finer grid.

    maps: list of ``(B, 21, h_l, w_l)``, finest first → same shapes.
    """

    def __init__(self, strides: Sequence[int], channels: int = MAP_CHANNELS):
        super().__init__()
        self.strides = list(strides)
        self.upsample = nn.ModuleList()
        self.fuse = nn.ModuleList()
        for fine, coarse in zip(self.strides[:-1], self.strides[1:]):
            if coarse == fine:
                self.upsample.append(nn.Identity())
            elif coarse == 2 * fine:
                up = nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1, bias=False)
                with torch.no_grad():
                    up.weight.copy_(bilinear_upsampling_kernel(channels))
                self.upsample.append(up)
            else:
                raise UsageError(f"MMNet needs consecutive stages at equal or double stride, got {fine} then {coarse}")
            self.fuse.append(nn.Conv2d(2 * channels, channels, 3, padding=1))
        init_conv_weights(self.fuse)

    def forward(self, maps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if len(maps) != len(self.strides):
            raise ValueError(f"expected {len(self.strides)} levels, got {len(maps)}")
        out: list[torch.Tensor] = [maps[-1]] * len(maps)
        for level in reversed(range(len(maps) - 1)):
            up = fit_to_grid(self.upsample[level](out[level + 1]), tuple(maps[level].shape[-2:]))
            out[level] = self.fuse[level](torch.cat([maps[level], up], dim=1))
        return out


class MultiScaleEncoder(nn.Module):
    """Backbone block features → one enhanced 21-channel map per level.

    Per stage: :class:`StageEnhancement` then :class:`LocalSelfAttention`; then
    :class:`TopDownFusion` across stages.

    feats: ``{layer: (B, C, h, w)}`` holding every layer of ``stage_layers`` →
    list of ``(B, 21, h_l, w_l)``, finest first.
    """

    def __init__(
        self,
        stage_layers: Sequence[Sequence[str]],
        stage_channels: Sequence[Sequence[int]],
        strides: Sequence[int],
        rate: int = 4,
    ):
        super().__init__()
        self.stage_layers = [list(s) for s in stage_layers]
        self.enhance = nn.ModuleList(StageEnhancement(c, rate=rate) for c in stage_channels)
        self.attention = nn.ModuleList(LocalSelfAttention() for _ in stage_layers)
        self.fusion = TopDownFusion(strides)

    def stage_maps(self, feats: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Intra-scale enhancement and self-attention only (before fusion)."""
        return [
            attn(enh([feats[name] for name in layers]))
            for layers, enh, attn in zip(self.stage_layers, self.enhance, self.attention)
        ]

    def forward(self, feats: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        return self.fusion(self.stage_maps(feats))


# ============================================================================ 4D resampling


def interpolation_taps(n_in: int, n_out: int, mode: str, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """1D resampling ``n_in → n_out`` as a few taps per output index.

    Returns ``(index (n_out, T), weight (n_out, T))`` such that
    ``out[i] = Σ_t weight[i, t] · in[index[i, t]]`` reproduces
    ``F.interpolate(..., mode, align_corners=False)`` exactly (T = 1 for
    nearest, ≤ 4 for bicubic, borders clamped as PyTorch does).
    """
    if mode not in UPSAMPLE_MODES:
        raise UsageError(f"unknown upsampling {mode!r}; choose one of {', '.join(UPSAMPLE_MODES)}")
    if mode == "nearest":
        src = F.interpolate(torch.arange(n_in, dtype=torch.float64).view(1, 1, n_in), size=n_out, mode="nearest")
        index = src.view(n_out, 1).long()
        return index.to(device), torch.ones(n_out, 1, device=device)
    eye = torch.eye(n_in, dtype=torch.float64).view(1, 1, n_in, n_in)
    # rows unchanged (identity), columns resampled: column j of the result is in→out for impulse j
    matrix = F.interpolate(eye, size=(n_in, n_out), mode="bicubic", align_corners=False)[0, 0].T  # (n_out, n_in)
    taps = min(4, n_in)
    weight, index = matrix.abs().topk(taps, dim=1)
    weight = matrix.gather(1, index)
    return index.to(device), weight.to(device=device, dtype=torch.float32)


def resample_dim(x: torch.Tensor, dim: int, index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Apply :func:`interpolation_taps` along one dimension of ``x``."""
    n_out, taps = index.shape
    gathered = x.index_select(dim, index.reshape(-1))
    if taps == 1:
        return gathered
    shape = list(gathered.shape)
    shape[dim : dim + 1] = [n_out, taps]
    gathered = gathered.reshape(shape)
    wshape = [1] * gathered.dim()
    wshape[dim], wshape[dim + 1] = n_out, taps
    return (gathered * weight.to(gathered.dtype).view(wshape)).sum(dim + 1)


def resize_last_two(x: torch.Tensor, size: tuple[int, int], mode: str = "nearest") -> torch.Tensor:
    """Resample the last two dimensions: ``(..., h, w)`` → ``(..., *size)`` (``F.interpolate``, align_corners=False)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if mode not in UPSAMPLE_MODES:
        raise UsageError(f"unknown upsampling {mode!r}; choose one of {', '.join(UPSAMPLE_MODES)}")
    lead = x.shape[:-2]
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    y = F.interpolate(x.reshape(1, -1, *x.shape[-2:]), size=tuple(size), mode=mode, **kwargs)
    return y.view(*lead, *size)


def upsample_4d(
    corr: torch.Tensor, size_a: tuple[int, int], size_b: tuple[int, int], mode: str = "nearest"
) -> torch.Tensor:
    """Resample a volume in all four dimensions.

    corr ``(B, hA, wA, hB, wB)`` → ``(B, *size_a, *size_b)``; with sizes twice the
    input this is the ×2 upsampling ``U`` of the paper (nearest: every score
    copied to its 2×2×2×2 children; bicubic: separable cubic, a = -0.75).
    """
    if corr.dim() != 5:
        raise ValueError(f"correlation must be (B, hA, wA, hB, wB), got shape {tuple(corr.shape)}")
    out = resize_last_two(corr, size_b, mode)  # target dims: one interpolation over all source cells
    for dim, n_out in zip((1, 2), size_a):  # source dims: whole target maps move together
        if out.shape[dim] != n_out:
            out = resample_dim(out, dim, *interpolation_taps(out.shape[dim], n_out, mode, corr.device))
    return out


# ============================================================================ coarse-to-fine correlation


def coarse_to_fine_volumes(
    maps_a: Sequence[torch.Tensor],
    maps_b: Sequence[torch.Tensor],
    upsample: str = "nearest",
    stop_level: int = 0,
) -> list[torch.Tensor | None]:
    """``S_l = S̃_l + U(S_{l+1}).detach()`` from the coarsest level down to ``stop_level``.

    ``S̃_l`` is the raw dot-product correlation of the level's maps (no
    normalisation, no ReLU). maps_a / maps_b: lists of ``(B, C, h_l, w_l)``,
    finest first. Returns a list indexed by level: ``(B, hA_l, wA_l, hB_l, wB_l)``
    for levels ≥ ``stop_level``, ``None`` for the finer ones (never built).
    """
    n = len(maps_a)
    if len(maps_b) != n or n == 0:
        raise ValueError("both images need the same, non-zero number of levels")
    if not 0 <= stop_level < n:
        raise UsageError(f"level {stop_level} does not exist (levels 0 to {n - 1})")
    volumes: list[torch.Tensor | None] = [None] * n
    coarser: torch.Tensor | None = None
    for level in reversed(range(stop_level, n)):
        fa, fb = maps_a[level], maps_b[level]
        s = correlation_4d(fa, fb)
        if coarser is not None:
            s = add_upsampled_(s, coarser.detach(), upsample)
        volumes[level] = coarser = s
    return volumes


def _repeat_factor(n_in: int, n_out: int, mode: str) -> int | None:
    """``r`` when resampling ``n_in → n_out`` copies every index ``r`` times (nearest, ``n_out = r·n_in``), else None."""
    if mode != "nearest" or n_out % n_in:
        return None
    r = n_out // n_in
    index, _ = interpolation_taps(n_in, n_out, mode)
    return r if torch.equal(index.view(-1), torch.arange(n_in).repeat_interleave(r)) else None


def add_upsampled_(s: torch.Tensor, coarser: torch.Tensor, mode: str = "nearest") -> torch.Tensor:
    """``s + upsample_4d(coarser, …)`` to the grid of ``s``, added in place into ``s`` (returned).

    s ``(B, hA, wA, hB, wB)``, coarser ``(B, hA', wA', hB', wB')``. When the
    source grid grows by whole factors with nearest resampling (every ×2
    level of a ResNet), the target maps are resampled once and broadcast to
    their ``r1 × r2`` source children, so the upsampled volume is never built;
    otherwise :func:`upsample_4d` is added. Same sums either way.
    """
    b, ha, wa, hb, wb = s.shape
    _, hac, wac = coarser.shape[:3]
    r1, r2 = _repeat_factor(hac, ha, mode), _repeat_factor(wac, wa, mode)
    if r1 is None or r2 is None or not s.is_contiguous():
        return s.add_(upsample_4d(coarser, (ha, wa), (hb, wb), mode))
    maps = resize_last_two(coarser, (hb, wb), mode)  # (B, hA', wA', hB, wB)
    s.view(b, hac, r1, wac, r2, hb * wb).add_(maps.reshape(b, hac, 1, wac, 1, hb * wb))
    return s


def _cell_rows(
    feat_a: torch.Tensor,
    feat_b: torch.Tensor,
    coarse: torch.Tensor | None,
    cells_y: torch.Tensor,
    cells_x: torch.Tensor,
    upsample: str,
) -> torch.Tensor:
    """Rows of ``S = S̃ + U(coarse)`` at integer source cells.

    feat_a ``(B, C, hA, wA)``, feat_b ``(B, C, hB, wB)``, coarse
    ``(B, hA', wA', hB', wB')`` or None, cells ``(B, N)`` long → ``(B, N, hB, wB)``.
    """
    b, c, ha, wa = feat_a.shape
    hb, wb = feat_b.shape[-2:]
    flat_idx = (cells_y * wa + cells_x).unsqueeze(1).expand(b, c, -1)
    fa = feat_a.reshape(b, c, ha * wa).gather(2, flat_idx)  # (B, C, N)
    rows = torch.bmm(fa.transpose(1, 2), feat_b.reshape(b, c, hb * wb)).view(b, -1, hb, wb)
    if coarse is None:
        return rows
    coarse = coarse.detach()
    _, hac, wac, hbc, wbc = coarse.shape
    iy, wy = interpolation_taps(hac, ha, upsample, coarse.device)
    ix, wx = interpolation_taps(wac, wa, upsample, coarse.device)
    ty, tx = iy[cells_y], ix[cells_x]  # (B, N, Ty), (B, N, Tx)
    src = (ty.unsqueeze(-1) * wac + tx.unsqueeze(-2)).flatten(2)  # (B, N, Ty*Tx) coarse source cells
    w = (wy[cells_y].unsqueeze(-1) * wx[cells_x].unsqueeze(-2)).flatten(2).to(coarse.dtype)
    n, t = src.shape[1:]
    flat = coarse.reshape(b, hac * wac, hbc * wbc)
    picked = flat.gather(1, src.reshape(b, n * t, 1).expand(-1, -1, hbc * wbc)).view(b, n, t, hbc, wbc)
    up = picked[:, :, 0] if t == 1 else (picked * w.view(b, n, t, 1, 1)).sum(2)
    return rows + resize_last_two(up, (hb, wb), upsample)


def _nan_safe(points: torch.Tensor) -> torch.Tensor:
    return torch.nan_to_num(points, nan=0.0)


def correlation_rows(
    feat_a: torch.Tensor,
    feat_b: torch.Tensor,
    coarse: torch.Tensor | None,
    points: torch.Tensor,
    upsample: str = "nearest",
) -> torch.Tensor:
    """Bilinearly sampled rows of ``S = S̃ + U(coarse)`` at fractional source points.

    Equal to sampling the full volume of :func:`coarse_to_fine_volumes` at
    ``points`` (bilinear over the 4 surrounding source cells), but costs
    ``O(N · hB · wB)``: the level's volume is never built.

    feat_a ``(B, C, hA, wA)``, feat_b ``(B, C, hB, wB)``, coarse: the coarser
    level's volume ``(B, hA', wA', hB', wB')`` (detached here) or None, points
    ``(B, N, 2)`` source-grid ``(x, y)`` in cell units (clamped to the grid;
    NaN rows give zero-point rows the caller should mask) → ``(B, N, hB, wB)``.
    """
    ha, wa = feat_a.shape[-2:]
    p = _nan_safe(points)
    x = p[..., 0].clamp(0, wa - 1)
    y = p[..., 1].clamp(0, ha - 1)
    x0 = x.floor().long().clamp(max=wa - 1)
    y0 = y.floor().long().clamp(max=ha - 1)
    x1 = (x0 + 1).clamp(max=wa - 1)
    y1 = (y0 + 1).clamp(max=ha - 1)
    fx = (x - x0.to(x.dtype)).unsqueeze(-1).unsqueeze(-1)
    fy = (y - y0.to(y.dtype)).unsqueeze(-1).unsqueeze(-1)
    out = 0
    for cy, cx, weight in (
        (y0, x0, (1 - fy) * (1 - fx)),
        (y0, x1, (1 - fy) * fx),
        (y1, x0, fy * (1 - fx)),
        (y1, x1, fy * fx),
    ):
        out = out + weight * _cell_rows(feat_a, feat_b, coarse, cy, cx, upsample)
    return out


def chunked_matches(
    feat_a: torch.Tensor,
    feat_b: torch.Tensor,
    coarse: torch.Tensor | None,
    match_rows,
    upsample: str = "nearest",
    chunk: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Matches of every source cell of ``S = S̃ + U(coarse)``, ``chunk`` source cells at a time.

    ``match_rows(rows (B, 1, n, hB, wB)) -> (B, 1, n, 2)`` turns score rows into
    normalised target coordinates (e.g. :func:`semcorr.flow.argmax_matches`).
    Peak memory is ``chunk · hB · wB`` scores instead of the whole volume.

    → ``(matches (B, hA, wA, 2), best score (B, hA, wA))``.
    """
    b, _, ha, wa = feat_a.shape
    cells = torch.arange(ha * wa, device=feat_a.device)
    matches, best = [], []
    for start in range(0, ha * wa, chunk):
        idx = cells[start : start + chunk].unsqueeze(0).expand(b, -1)
        rows = _cell_rows(feat_a, feat_b, coarse, idx // wa, idx % wa, upsample)
        matches.append(match_rows(rows.unsqueeze(1))[:, 0])
        best.append(rows.flatten(2).max(-1).values)
        del rows
    return torch.cat(matches, 1).view(b, ha, wa, 2), torch.cat(best, 1).view(b, ha, wa)

