"""SFNet's matching pieces: adaptation layers, two-level correlation, kernel soft-argmax."""

from __future__ import annotations

import math

import pytest
import torch

from semcorr.sfnet_adaptation import AdaptationLayer
from semcorr.flow import kernel_soft_argmax_matches, soft_argmax_matches
from semcorr.geometry import cell_centers, cell_grid
from semcorr.models.sfnet import SFNet


def one_hot_corr(hb: int, wb: int, hits: dict[tuple[int, int], tuple[int, int]], ha: int = 2, wa: int = 3):
    """(1, ha, wa, hb, wb) with score 1 at hits[(i, j)] = (k, l) (others 0)."""
    corr = torch.zeros(1, ha, wa, hb, wb)
    for (i, j), (k, l) in hits.items():
        corr[0, i, j, k, l] = 1.0
    return corr


# ----------------------------------------------------------------------------- kernel soft-argmax


def test_kernel_soft_argmax_of_a_one_hot_correlation_is_the_argmax_cell():
    hb, wb = 7, 9
    hits = {(0, 0): (0, 0), (0, 1): (6, 8), (0, 2): (3, 4), (1, 0): (2, 7), (1, 1): (5, 1), (1, 2): (0, 8)}
    corr = one_hot_corr(hb, wb, hits)
    out = kernel_soft_argmax_matches(corr, beta=50.0, sigma=5.0, normalize=True)
    xs, ys = cell_centers(wb), cell_centers(hb)
    for (i, j), (k, l) in hits.items():
        assert out[0, i, j, 0].item() == pytest.approx(xs[l].item(), abs=1e-5)
        assert out[0, i, j, 1].item() == pytest.approx(ys[k].item(), abs=1e-5)
    # beta=None is the discrete argmax, exactly.
    exact = kernel_soft_argmax_matches(corr, beta=None)
    for (i, j), (k, l) in hits.items():
        assert exact[0, i, j].tolist() == [xs[l].item(), ys[k].item()]


@pytest.mark.parametrize("autograd", [False, True], ids=["inference-route", "autograd-route"])
def test_kernel_soft_argmax_hand_computed_two_cell_case(autograd):
    # Target 5x5; scores a at (2, 2), b at (2, 3), 0 elsewhere.
    a, b, beta, sigma = 1.0, 0.9, 50.0, 5.0
    corr = torch.zeros(1, 1, 1, 5, 5)
    corr[0, 0, 0, 2, 2], corr[0, 0, 0, 2, 3] = a, b
    corr.requires_grad_(autograd)
    out = kernel_soft_argmax_matches(corr, beta=beta, sigma=sigma, normalize=True)[0, 0, 0].detach()
    n = math.sqrt(a * a + b * b + 1e-6)  # L2 over the target cells
    g = math.exp(-1.0 / (2 * sigma**2))  # window at one cell from the argmax
    w_peak, w_next, w_zero = 1.0, math.exp(beta * (b * g - a) / n), math.exp(-beta * a / n)
    z = w_peak + w_next + 23 * w_zero
    xs = [-1.0, -0.5, 0.0, 0.5, 1.0]
    # Zero-score cells are spread symmetrically except for the peak's row neighbours.
    sum_x_zero = 5 * sum(xs) - xs[2] - xs[3]
    expected_x = (w_peak * xs[2] + w_next * xs[3] + w_zero * sum_x_zero) / z
    expected_y = 0.0  # rows are symmetric around row 2
    assert out[0].item() == pytest.approx(expected_x, abs=1e-6)
    assert out[1].item() == pytest.approx(expected_y, abs=1e-6)


def test_kernel_soft_argmax_stays_in_the_window_of_a_bimodal_correlation():
    # Two nearly equal peaks 15 cells apart (window σ = 5): plain soft-argmax
    # lands between them, the kernel version stays at the stronger one.
    hb, wb = 4, 20
    corr = torch.zeros(1, 1, 1, hb, wb)
    corr[0, 0, 0, 1, 2] = 1.0
    corr[0, 0, 0, 1, 17] = 0.98
    xs = cell_centers(wb)
    kernel = kernel_soft_argmax_matches(corr, beta=50.0, sigma=5.0, normalize=True)[0, 0, 0, 0].item()
    plain = soft_argmax_matches(corr, beta=50.0)[0, 0, 0, 0].item()
    cell = 2.0 / (wb - 1)
    assert abs(kernel - xs[2].item()) < 0.01 * cell
    assert abs(plain - xs[2].item()) > 3 * cell


@pytest.mark.parametrize("transposed", [False, True])
def test_kernel_soft_argmax_inference_route_equals_the_autograd_route(transposed):
    # Without autograd the same sum is taken in fewer passes (separable window, unnormalised
    # exponentials); both routes must agree, also on a transposed (non-contiguous) view.
    g = torch.Generator().manual_seed(5)
    corr = torch.randn(2, 6, 7, 9, 11, generator=g) * 0.3
    if transposed:
        corr = corr.permute(0, 3, 4, 1, 2)
    with torch.no_grad():
        fast = kernel_soft_argmax_matches(corr, beta=50.0, sigma=2.0)
    literal = kernel_soft_argmax_matches(corr.clone().requires_grad_(True), beta=50.0, sigma=2.0).detach()
    assert fast.shape == literal.shape == (*corr.shape[:3], 2)
    assert (fast - literal).abs().max() < 1e-6
    before = corr.clone()  # the inference route works in place on its own temporaries only
    with torch.no_grad():
        kernel_soft_argmax_matches(corr, beta=50.0, sigma=2.0)
    assert torch.equal(corr, before)


def test_kernel_soft_argmax_is_differentiable_through_the_scores():
    corr = torch.rand(1, 3, 3, 4, 4, requires_grad=True)
    kernel_soft_argmax_matches(corr, beta=50.0, normalize=True).sum().backward()
    assert torch.isfinite(corr.grad).all() and corr.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- correlation


def manual_sfnet_scores(fa3, fa4, fb3, fb4):
    """Independent loop-free re-implementation of SFNet's matching on (C, h, w) maps, batch of 1."""
    def up(x, size):
        return torch.nn.functional.interpolate(x[None], size=size, mode="bilinear", align_corners=True)[0]

    def norm(x):
        return x / torch.sqrt((x**2).sum(0, keepdim=True) + 1e-6)

    ha, wa = fa3.shape[1:]
    hb, wb = fb3.shape[1:]
    a3, b3 = norm(fa3).flatten(1), norm(fb3).flatten(1)
    a4, b4 = norm(up(fa4, (ha, wa))).flatten(1), norm(up(fb4, (hb, wb))).flatten(1)
    prod = (a3.t() @ b3).clamp_min(0) * (a4.t() @ b4).clamp_min(0)  # (ha*wa, hb*wb)
    s2t = prod / torch.sqrt((prod**2).sum(1, keepdim=True) + 1e-6)
    t2s = prod.t() / torch.sqrt((prod.t() ** 2).sum(1, keepdim=True) + 1e-6)
    return s2t.view(ha, wa, hb, wb), t2s.view(hb, wb, ha, wa)


def test_two_level_correlation_matches_a_direct_computation_with_odd_sizes():
    torch.manual_seed(0)
    fa3, fa4 = torch.randn(1, 6, 5, 7), torch.randn(1, 8, 3, 4)  # 5x7 fine grid, 3x4 coarse
    fb3, fb4 = torch.randn(1, 6, 4, 6), torch.randn(1, 8, 2, 3)
    s2t, t2s = SFNet.correlation((fa3, fa4), (fb3, fb4))
    assert s2t.shape == (1, 5, 7, 4, 6) and t2s.shape == (1, 4, 6, 5, 7)
    m_s2t, m_t2s = manual_sfnet_scores(fa3[0], fa4[0], fb3[0], fb4[0])
    assert torch.allclose(s2t[0], m_s2t, atol=1e-5)
    assert torch.allclose(t2s[0], m_t2s, atol=1e-5)
    # Non-negative, unit norm over the other image's cells (where any score is positive).
    for c in (s2t, t2s):
        flat = c.flatten(3)
        norms = flat.norm(dim=-1)
        assert (flat >= 0).all()
        assert torch.allclose(norms[norms > 0.5], torch.ones_like(norms[norms > 0.5]), atol=1e-3)


def test_identical_feature_maps_match_every_cell_to_itself():
    torch.manual_seed(1)
    f3, f4 = torch.randn(2, 16, 6, 6), torch.randn(2, 16, 3, 3)
    s2t, t2s = SFNet.correlation((f3, f4), (f3, f4))
    flat = s2t.flatten(3)
    assert torch.equal(flat.argmax(-1), torch.arange(36).view(1, 6, 6).expand(2, 6, 6))
    assert torch.allclose(s2t, t2s, atol=1e-6)  # a symmetric product gives the same both ways


# ----------------------------------------------------------------------------- adaptation layers


def test_adaptation_layer_uses_the_public_code_parameter_names():
    layer = AdaptationLayer(8, 5)
    names = set(layer.state_dict())
    expected = set()
    for block in ("conv1", "conv2"):
        expected |= {f"{block}.0.weight", f"{block}.0.bias"}
        expected |= {f"{block}.1.{n}" for n in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    assert names == expected
    assert layer.conv1[0].weight.shape == (8, 8, 5, 5) and layer.conv1[0].padding == (2, 2)
    assert AdaptationLayer(4, 3).conv2[0].weight.shape == (4, 4, 3, 3)


def test_adaptation_layer_is_residual_relu_bn_conv():
    torch.manual_seed(0)
    layer = AdaptationLayer(3, 3).eval()
    x = torch.randn(2, 3, 6, 5)
    for block in (layer.conv1, layer.conv2):
        torch.nn.init.zeros_(block[0].weight)
        torch.nn.init.zeros_(block[0].bias)
    assert torch.equal(layer(x), x)  # zero convolutions: identity
    # A constant bias c passes BN (eval, mean 0, var 1) and ReLU: x + relu(c) twice.
    layer.conv1[0].bias.data.fill_(0.5)
    layer.conv2[0].bias.data.fill_(-0.5)
    bn_scale = 1 / math.sqrt(1 + 1e-5)
    assert torch.allclose(layer(x), x + 0.5 * bn_scale, atol=1e-6)


def test_adaptation_layer_rejects_wrong_channels():
    with pytest.raises(ValueError, match="expects"):
        AdaptationLayer(4, 3)(torch.zeros(1, 5, 3, 3))


def test_identity_grid_helper_agrees_with_cell_centres():
    g = cell_grid(3, 4)
    assert g[2, 3].tolist() == [1.0, 1.0] and g[0, 0].tolist() == [-1.0, -1.0]
