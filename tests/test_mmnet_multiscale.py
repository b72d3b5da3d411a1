"""MMNet's multi-scale pieces (core/mmnet_multiscale.py): enhancement, attention, fusion, coarse-to-fine correlation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from semcorr.correlation import correlation_4d
from semcorr.errors import UsageError
from semcorr.flow import argmax_matches
from semcorr.losses.mmnet import sample_volume_rows
from semcorr.mmnet_multiscale import (
    LocalSelfAttention,
    ScaleEnhancement,
    StageEnhancement,
    TopDownFusion,
    add_upsampled_,
    chunked_matches,
    coarse_to_fine_volumes,
    correlation_rows,
    fit_to_grid,
    interpolation_taps,
    neighbourhood_3x3,
    resample_dim,
    upsample_4d,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def random_levels(b=2, sizes_a=((8, 6), (4, 3), (2, 2)), sizes_b=((6, 8), (3, 4), (2, 2)), c=5, grad=False):
    fa = [torch.randn(b, c, *s, requires_grad=grad) for s in sizes_a]
    fb = [torch.randn(b, c, *s, requires_grad=grad) for s in sizes_b]
    return fa, fb


# ----------------------------------------------------------------------------- enhancement


@pytest.mark.parametrize("shape", [(2, 24, 16, 12), (1, 64, 7, 9)])
def test_scale_enhancement_shape_and_formula(shape):
    m = ScaleEnhancement(shape[1])
    x = torch.randn(shape)
    out = m(x)
    assert out.shape == (shape[0], 21, *shape[2:])
    assert [c.dilation for c in m.dilated] == [(4, 4), (8, 8), (12, 12)]
    o = F.relu(F.conv2d(x, m.conv.weight, m.conv.bias, padding=1))
    total = o + sum(F.relu(F.conv2d(o, c.weight, c.bias, padding=d, dilation=d)) for c, d in zip(m.dilated, (4, 8, 12)))
    expected = F.conv2d(total, m.down.weight, m.down.bias)
    torch.testing.assert_close(out, expected)


def test_stage_enhancement_sums_its_blocks():
    m = StageEnhancement([16, 24, 24])
    feats = [torch.randn(2, c, 9, 7) for c in (16, 24, 24)]
    out = m(feats)
    assert out.shape == (2, 21, 9, 7)
    torch.testing.assert_close(out, sum(b(f) for b, f in zip(m.blocks, feats)))
    with pytest.raises(ValueError):
        m(feats[:2])


def test_neighbourhood_replicates_borders():
    x = torch.arange(12.0).view(1, 1, 3, 4)
    n = neighbourhood_3x3(x)
    assert n.shape == (1, 1, 9, 3, 4)
    torch.testing.assert_close(n[0, 0, 4], x[0, 0])  # the cell itself
    # top-left cell: its up-left neighbour is itself (replicated), its down-right one is x[1, 1]
    assert n[0, 0, 0, 0, 0] == 0 and n[0, 0, 8, 0, 0] == x[0, 0, 1, 1]
    # bottom-right cell: its right neighbour is itself
    assert n[0, 0, 5, 2, 3] == x[0, 0, 2, 3]


@pytest.mark.parametrize("shape", [(2, 21, 10, 8), (1, 21, 5, 13)])
def test_local_self_attention_matches_a_per_cell_reference(shape):
    m = LocalSelfAttention()
    x = torch.randn(shape)
    out = m(x)
    assert out.shape == shape
    a = m.attention_weights(x)
    torch.testing.assert_close(a.sum(1), torch.ones(shape[0], *shape[2:]))
    # reference for one interior and one border cell, written out with loops
    q, k, v = (conv(x) for conv in (m.query, m.key, m.value))  # no activation (public WeightAverage)
    h, w = shape[2:]
    for (i, j) in ((2, 3), (0, w - 1)):
        sims, vals = [], []
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                yy, xx = min(max(i + dy, 0), h - 1), min(max(j + dx, 0), w - 1)
                sims.append(F.cosine_similarity(q[0, :, i, j], k[0, :, yy, xx], dim=0, eps=1e-8))
                vals.append(v[0, :, yy, xx])
        weights = torch.softmax(torch.stack(sims), 0)
        agg = (weights[:, None] * torch.stack(vals)).sum(0)
        expected = x[0, :, i, j] + m.out.weight[:, :, 0, 0] @ agg + m.out.bias
        torch.testing.assert_close(out[0, :, i, j], expected, rtol=1e-4, atol=1e-5)


def test_local_self_attention_is_residual():
    m = LocalSelfAttention()
    with torch.no_grad():
        m.out.weight.zero_()
        m.out.bias.zero_()
    x = torch.randn(1, 21, 6, 6)
    torch.testing.assert_close(m(x), x)


@pytest.mark.parametrize(
    "sizes",
    [
        [(16, 12), (8, 6), (4, 3), (2, 2)],  # exact halving
        [(25, 25), (13, 13), (7, 7), (4, 4)],  # odd grids (100 px at strides 4..32): crop to the finer grid
    ],
)
def test_top_down_fusion_shapes(sizes):
    m = TopDownFusion([4, 8, 16, 32])
    maps = [torch.randn(2, 21, *s) for s in sizes]
    out = m(maps)
    assert [tuple(o.shape) for o in out] == [(2, 21, *s) for s in sizes]
    torch.testing.assert_close(out[-1], maps[-1])  # the coarsest level is not fused
    up = fit_to_grid(m.upsample[0](out[1]), sizes[0])
    torch.testing.assert_close(out[0], m.fuse[0](torch.cat([maps[0], up], 1)))
    assert isinstance(m.upsample[0], torch.nn.ConvTranspose2d) and m.upsample[0].bias is None


def test_top_down_fusion_skips_upsampling_between_equal_strides():
    m = TopDownFusion([4, 8, 8, 8])  # dilated (FCN) ResNet
    assert isinstance(m.upsample[0], torch.nn.ConvTranspose2d)
    assert all(isinstance(u, torch.nn.Identity) for u in m.upsample[1:])
    out = m([torch.randn(1, 21, 12, 12)] + [torch.randn(1, 21, 6, 6) for _ in range(3)])
    assert [o.shape[-1] for o in out] == [12, 6, 6, 6]
    with pytest.raises(UsageError):
        TopDownFusion([4, 16])


def test_transposed_conv_starts_as_bilinear_upsampling():
    m = TopDownFusion([4, 8])
    up = m.upsample[0](torch.full((1, 21, 5, 5), 3.0))
    assert up.shape[-2:] == (10, 10)
    torch.testing.assert_close(up[..., 1:-1, 1:-1], torch.full((1, 21, 8, 8), 3.0))


def test_fit_to_grid_crops_and_pads():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert fit_to_grid(x, (3, 3)).tolist() == x[..., :3, :3].tolist()
    padded = fit_to_grid(x, (5, 4))
    assert padded.shape[-2:] == (5, 4) and padded[0, 0, 4].tolist() == x[0, 0, 3].tolist()


# ----------------------------------------------------------------------------- 4D upsampling


@pytest.mark.parametrize("mode", ["nearest", "bicubic"])
@pytest.mark.parametrize("n_in,n_out", [(5, 10), (7, 13), (2, 4), (1, 2)])
def test_interpolation_taps_reproduce_interpolate(mode, n_in, n_out):
    x = torch.randn(2, 3, n_in, 4)
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    ref = F.interpolate(x, size=(n_out, 4), mode=mode, **kwargs)
    torch.testing.assert_close(resample_dim(x, 2, *interpolation_taps(n_in, n_out, mode)), ref, rtol=1e-5, atol=1e-5)


def test_nearest_4d_upsampling_copies_each_score_to_its_16_children():
    corr = torch.randn(2, 3, 4, 2, 5)
    up = upsample_4d(corr, (6, 8), (4, 10), "nearest")
    assert up.shape == (2, 6, 8, 4, 10)
    i, j, k, l = torch.meshgrid(*(torch.arange(n) for n in (6, 8, 4, 10)), indexing="ij")
    torch.testing.assert_close(up, corr[:, i // 2, j // 2, k // 2, l // 2])


def test_bicubic_4d_upsampling_is_separable_bicubic():
    corr = torch.randn(1, 3, 4, 5, 2)
    up = upsample_4d(corr, (6, 8), (10, 4), "bicubic")
    # resample target dims as a 2D image per source cell, then source dims per target cell
    ref = F.interpolate(corr.view(12, 1, 5, 2), size=(10, 4), mode="bicubic", align_corners=False).view(1, 3, 4, 10, 4)
    ref = ref.permute(0, 3, 4, 1, 2).reshape(40, 1, 3, 4)
    ref = F.interpolate(ref, size=(6, 8), mode="bicubic", align_corners=False).view(1, 10, 4, 6, 8).permute(0, 3, 4, 1, 2)
    torch.testing.assert_close(up, ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(UsageError):
        upsample_4d(corr, (6, 8), (10, 4), "trilinear")


# ----------------------------------------------------------------------------- coarse to fine


@pytest.mark.parametrize("mode", ["nearest", "bicubic"])
def test_each_level_is_its_own_correlation_plus_the_upsampled_coarser_one(mode):
    fa, fb = random_levels()
    vols = coarse_to_fine_volumes(fa, fb, mode)
    torch.testing.assert_close(vols[2], correlation_4d(fa[2], fb[2]))
    for level in (1, 0):
        own = correlation_4d(fa[level], fb[level])
        up = upsample_4d(vols[level + 1], fa[level].shape[-2:], fb[level].shape[-2:], mode)
        torch.testing.assert_close(vols[level], own + up)
        assert not torch.allclose(vols[level], own)  # the coarser term is really there
    partial = coarse_to_fine_volumes(fa, fb, mode, stop_level=1)
    assert partial[0] is None
    torch.testing.assert_close(partial[1], vols[1])


def test_no_gradient_flows_through_the_upsampled_coarser_correlation():
    fa, fb = random_levels(grad=True)
    vols = coarse_to_fine_volumes(fa, fb)
    vols[0].square().sum().backward()
    assert fa[0].grad is not None and fa[0].grad.abs().sum() > 0
    for coarse in fa[1:] + fb[1:]:
        assert coarse.grad is None
    # the coarser level itself still trains through its own correlation
    fa, fb = random_levels(grad=True)
    coarse_to_fine_volumes(fa, fb)[1].sum().backward()
    assert fa[1].grad.abs().sum() > 0 and fa[2].grad is None


@pytest.mark.parametrize("mode", ["nearest", "bicubic"])
def test_correlation_rows_equal_sampling_the_full_volume(mode):
    fa, fb = random_levels()
    vols = coarse_to_fine_volumes(fa, fb, mode)
    points = torch.tensor([[[0.0, 0.0], [5.0, 7.0], [2.5, 3.25], [4.9, 0.1]], [[1.0, 2.0], [3.3, 6.6], [0.5, 0.5], [5.0, 0.0]]])
    for level in (0, 1):
        rows = correlation_rows(fa[level], fb[level], vols[level + 1], points * 0.5**level, mode)
        torch.testing.assert_close(rows, sample_volume_rows(vols[level], points * 0.5**level), rtol=1e-4, atol=1e-4)
    # integer cell (5, 7) → exactly row (7, 5) of the finest volume
    torch.testing.assert_close(
        correlation_rows(fa[0], fb[0], vols[1], points, mode)[0, 1], vols[0][0, 7, 5], rtol=1e-5, atol=1e-5
    )


def test_chunked_matches_equal_the_full_volume():
    fa, fb = random_levels()
    vols = coarse_to_fine_volumes(fa, fb)
    matches, best = chunked_matches(fa[0], fb[0], vols[1], argmax_matches, chunk=5)
    torch.testing.assert_close(matches, argmax_matches(vols[0]))
    torch.testing.assert_close(best, vols[0].flatten(3).max(-1).values)


def test_local_self_attention_known_answer_without_activation():
    """2 channels, 1 inner channel, a 1×3 map: θ = φ = g = x₀, so cos = sign(x₀(p))·sign(x₀(n)).

    Cell 0 (x₀ = −2) sees, borders replicated, six copies of itself (cos +1) and
    three of its right neighbour x₀ = 1 (cos −1). A ReLU on θ/φ/g would make θ = 0
    there (uniform weights) and g ≥ 0: a different number.
    """
    m = LocalSelfAttention(channels=2)
    assert m.query.out_channels == 1  # c_in // 2, as WeightAverage
    with torch.no_grad():
        for conv in (m.query, m.key, m.value):
            conv.weight.copy_(torch.tensor([1.0, 0.0]).view(1, 2, 1, 1))
            conv.bias.zero_()
        m.out.weight.copy_(torch.tensor([1.0, 0.0]).view(2, 1, 1, 1))
        m.out.bias.zero_()
    x = torch.tensor([[-2.0, 1.0, 3.0], [5.0, 5.0, 5.0]]).view(1, 2, 1, 3)
    e = math.exp(1.0)
    cell0 = -2.0 + (6 * e * -2.0 + 3 / e * 1.0) / (6 * e + 3 / e)
    # cell 1 (x₀ = 1): neighbours −2 (×3, cos −1), 1 (×3, +1), 3 (×3, +1)
    cell1 = 1.0 + (3 / e * -2.0 + 3 * e * 1.0 + 3 * e * 3.0) / (3 / e + 6 * e)
    out = m(x)
    assert out[0, 0, 0, 0].item() == pytest.approx(cell0, rel=1e-6)
    assert out[0, 0, 0, 1].item() == pytest.approx(cell1, rel=1e-6)
    torch.testing.assert_close(out[0, 1], x[0, 1])  # conv_back writes channel 0 only


def test_top_down_fusion_puts_the_level_s_own_map_first():
    """conv_scale reads cat(current level, upsampled coarser level): pass the first half through."""
    m = TopDownFusion([4, 8], channels=3)
    with torch.no_grad():
        m.fuse[0].weight.zero_()
        m.fuse[0].bias.zero_()
        for c in range(3):
            m.fuse[0].weight[c, c, 1, 1] = 1.0  # input channel c: the level's own map
            m.fuse[0].weight[c, 3 + c, 1, 1] = 10.0  # input channel 3 + c: the upsampled coarser map
    fine, coarse = torch.randn(1, 3, 4, 6), torch.randn(1, 3, 2, 3)
    out = m([fine, coarse])
    up = m.upsample[0](coarse)
    torch.testing.assert_close(out[0], fine + 10.0 * up)


@pytest.mark.parametrize("mode", ["nearest", "bicubic"])
@pytest.mark.parametrize("coarse, fine", [((3, 4), (6, 8)), ((2, 3), (6, 9)), ((3, 4), (5, 8))])
def test_add_upsampled_in_place_equals_adding_the_upsampled_volume(mode, coarse, fine):
    g = torch.Generator().manual_seed(3)
    coarser = torch.randn(2, *coarse, 4, 3, generator=g)
    s = torch.randn(2, *fine, 7, 5, generator=g)
    expected = s + upsample_4d(coarser, fine, (7, 5), mode)
    out = add_upsampled_(s, coarser, mode)
    assert out.data_ptr() == s.data_ptr()  # in place
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
