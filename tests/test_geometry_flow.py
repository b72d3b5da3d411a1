"""Correlation, matching and flow: hand-computed cases, identities and invariants."""

import math

import pytest
import torch

from semcorr.correlation import correlate, correlation_4d, l2_normalize, mutual_nn_mask, normalize_over_target, transpose_corr
from semcorr.flow import (
    argmax_matches,
    gaussian_window,
    kernel_soft_argmax_matches,
    matches_from_corr,
    matches_to_flow,
    soft_argmax_matches,
)
from semcorr.geometry import cell_centers, cell_grid, normalized_to_pixels, pixels_to_normalized
from semcorr.warp import points_through_flow, valid_flow_mask, warp_image, warp_mask


def test_cell_centres_and_pixel_round_trip():
    assert cell_centers(5).tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert cell_centers(1).tolist() == [0.0]
    px = torch.tensor([[0.0, 0.0], [99.0, 49.0], [49.5, 24.5]])
    n = pixels_to_normalized(px, (50, 100))
    assert torch.allclose(n, torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]]))
    assert torch.allclose(normalized_to_pixels(n, (50, 100)), px)


def test_correlation_by_hand():
    a = torch.tensor([[[[1.0, 0.0]]], [[[0.0, 2.0]]]]).permute(1, 0, 2, 3)  # (1, 2, 1, 2)
    b = torch.tensor([[[[3.0]]], [[[4.0]]]]).permute(1, 0, 2, 3)  # (1, 2, 1, 1)
    c = correlation_4d(a, b)
    assert c.shape == (1, 1, 2, 1, 1)
    assert c.flatten().tolist() == [3.0, 8.0]
    assert transpose_corr(c).shape == (1, 1, 1, 1, 2)


def test_l2_normalize_formula():
    x = torch.tensor([[[[3.0]], [[4.0]]]])
    y = l2_normalize(x)
    assert torch.allclose(y.flatten(), torch.tensor([3.0, 4.0]) / math.sqrt(25 + 1e-6))


def test_self_correlation_argmax_is_identity():
    f = torch.randn(2, 16, 6, 7)
    c = correlate([f], [f])
    m = argmax_matches(c)
    assert torch.allclose(m, cell_grid(6, 7).expand(2, 6, 7, 2))
    assert torch.allclose(c.amax(dim=(3, 4)), torch.ones(2, 6, 7), atol=1e-5)  # cosine of a feature with itself


def test_product_mode_multiplies_layers():
    f1, g1 = torch.randn(1, 4, 3, 3), torch.randn(1, 4, 3, 3)
    f2, g2 = torch.randn(1, 5, 3, 3), torch.randn(1, 5, 3, 3)
    c = correlate([f1, f2], [g1, g2], mode="product", relu=True)
    expected = correlate([f1], [g1], relu=True) * correlate([f2], [g2], relu=True)
    assert torch.allclose(c, expected)


def test_normalize_over_target_has_unit_norm():
    c = torch.rand(1, 3, 4, 5, 6)
    n = normalize_over_target(c, eps=0)
    assert torch.allclose(n.pow(2).sum(dim=(3, 4)), torch.ones(1, 3, 4))


def _one_hot_corr(h=5, w=6, target=(2, 4)):
    c = torch.zeros(1, h, w, h, w)
    c[..., target[0], target[1]] = 1.0
    return c


def test_kernel_soft_argmax_equals_argmax_for_one_hot():
    c = _one_hot_corr()
    expected = argmax_matches(c)
    assert torch.allclose(kernel_soft_argmax_matches(c, beta=1000.0), expected, atol=1e-4)
    assert torch.allclose(kernel_soft_argmax_matches(c, beta=None), expected)
    assert expected[0, 0, 0].tolist() == [cell_centers(6)[4].item(), cell_centers(5)[2].item()]


def test_kernel_soft_argmax_stays_in_window_for_bimodal_scores():
    h, w = 1, 40
    c = torch.zeros(1, 1, 1, h, w)
    c[..., 0, 5] = 1.0  # the argmax
    c[..., 0, 35] = 0.99  # a far, almost as good peak
    xs = cell_centers(w)
    ks = kernel_soft_argmax_matches(c, beta=50.0, sigma=2.0)[0, 0, 0, 0]
    plain = soft_argmax_matches(c, beta=50.0)[0, 0, 0, 0]
    assert abs(ks - xs[5]) < 0.05  # stays at the argmax
    assert plain > xs[15]  # plain soft-argmax is dragged towards the second peak


def test_gaussian_window_values():
    c = _one_hot_corr(3, 3, (1, 1))
    g = gaussian_window(c, sigma=1.0)[0, 0, 0]
    assert g[1, 1] == 1.0
    assert torch.isclose(g[0, 0], torch.tensor(math.exp(-1.0)))


def test_mutual_nn_mask_by_hand():
    c = torch.tensor([[0.9, 0.1], [0.8, 0.2]]).view(1, 2, 1, 2, 1)
    m = mutual_nn_mask(c).view(2, 2)
    # source 0 → target 0 is mutual; source 1's best is target 0 but target 0 prefers source 0
    assert m.tolist() == [[True, False], [False, False]]


@pytest.mark.parametrize("method", ["argmax", "soft-argmax", "kernel-soft-argmax"])
def test_identity_flow_from_self_correlation(method):
    f = torch.randn(1, 32, 8, 10)
    st, ts = matches_from_corr(correlate([f], [f]), method=method, beta=200.0)
    flow = matches_to_flow(st, (40, 50), (40, 50))[0]
    px = torch.stack(torch.meshgrid(torch.arange(50.0), torch.arange(40.0), indexing="xy"), -1)
    cell = 50 / 10
    assert (flow - px).abs().max() < cell  # identity within a cell


def test_matches_to_flow_corners_map_to_pixel_corners():
    m = cell_grid(3, 4).unsqueeze(0)
    flow = matches_to_flow(m, (30, 40), (60, 80))[0]
    assert flow[0, 0].tolist() == [0.0, 0.0]
    assert torch.allclose(flow[-1, -1], torch.tensor([79.0, 59.0]))


def test_warp_image_with_a_translation_flow():
    img = torch.arange(30.0).view(1, 1, 5, 6)
    ys, xs = torch.meshgrid(torch.arange(5.0), torch.arange(6.0), indexing="ij")
    flow = torch.stack([xs + 1, ys], -1).unsqueeze(0)  # read one pixel to the right
    out = warp_image(img, flow)
    assert torch.allclose(out[0, 0, :, :5], img[0, 0, :, 1:])
    assert torch.all(out[0, 0, :, 5] == 0)  # outside → zero
    mask = warp_mask(torch.ones(1, 1, 5, 6), flow)
    assert mask[0, 0, :, :5].all() and not mask[0, 0, :, 5].any()
    assert valid_flow_mask(flow, (5, 6))[0, :, 5].sum() == 0


def test_transfer_keypoints_interpolates_and_flags_outside():
    h, w = 10, 20
    ys, xs = torch.meshgrid(torch.arange(float(h)), torch.arange(float(w)), indexing="ij")
    flow = torch.stack([2 * xs + 3, ys - 1], -1)  # an affine map
    pts = torch.tensor([[4.5, 2.25], [0.0, 0.0], [25.0, 1.0], [float("nan"), 1.0]])
    out = points_through_flow(pts, flow)
    assert torch.allclose(out[0], torch.tensor([12.0, 1.25]))
    assert torch.allclose(out[1], torch.tensor([3.0, -1.0]))
    assert torch.isnan(out[2]).all() and torch.isnan(out[3]).all()


def test_mutual_filter_keeps_mutual_matches_and_falls_back_to_argmax():
    from semcorr.flow import mutual_filter

    # source 0 ↔ target 0 mutual; source 1 prefers target 0 (taken) → no mutual match
    c = torch.tensor([[0.9, 0.1], [0.8, 0.2]]).view(1, 2, 1, 2, 1)
    f = mutual_filter(c).view(2, 2)
    assert torch.allclose(f[0], torch.tensor([0.9, 0.1]))  # mutual kept, the rest at the row minimum
    assert torch.allclose(f[1], torch.tensor([0.8, 0.2]))  # no mutual match: unchanged
    st, _ = matches_from_corr(c, method="argmax", mutual=True)
    assert st.view(2, 2)[:, 1].tolist() == [-1.0, -1.0]  # (x, y); targets lie along y
    # with a mutual partner elsewhere, the filtered row picks it even if not its global best
    c2 = torch.tensor([[0.9, 0.5], [0.95, 0.6]]).view(1, 2, 1, 2, 1)
    st2, _ = matches_from_corr(c2, method="argmax", mutual=True)
    assert st2.view(2, 2)[1, 1].item() == -1.0  # source 1 ↔ target 0 is the mutual pair
    assert st2.view(2, 2)[0, 1].item() == -1.0  # source 0 has none: falls back to its argmax
