"""MMNet's multi-scale keypoint loss (core/losses/mmnet.py)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from semcorr.losses.mmnet import (
    gaussian_kernel_3x3,
    inverse_distance_map,
    multiscale_keypoint_loss,
    pixels_to_grid,
    position_bce,
    sample_volume_rows,
    target_maps,
    volume_row_sampler,
)


def test_inverse_distance_weights_on_the_four_surrounding_cells():
    m = inverse_distance_map(torch.tensor([[[1.25, 2.0], [3.0, 1.0]]]), (4, 5))
    assert m.shape == (1, 2, 4, 5)
    torch.testing.assert_close(m.sum((-1, -2)), torch.ones(1, 2))
    # (1.25, 2): distances 0.25 to (1, 2) and 0.75 to (2, 2) → weights 3 : 1; the row below is sqrt(1+d²) away
    d = torch.tensor([0.25, 0.75, math.hypot(0.25, 1), math.hypot(0.75, 1)])
    w = (1 / d) / (1 / d).sum()
    torch.testing.assert_close(m[0, 0, 2, 1:3], w[:2], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(m[0, 0, 3, 1:3], w[2:], rtol=1e-4, atol=1e-6)
    # a point on a cell puts all its weight there
    assert m[0, 1, 1, 3] > 0.999


def test_target_map_is_the_public_blurred_inverse_distance_map():
    """The public gaussian2d(3): σ² = (3/2/2.354)², so the 1D taps are (g, 1, g) / (1 + 2g), g = exp(−1/(2σ²))."""
    g = math.exp(-1 / (2 * (3 / 2 / 2.354) ** 2))
    k = gaussian_kernel_3x3()
    assert abs(k.sum().item() - 1) < 1e-6 and k[0, 0, 1, 1].item() == pytest.approx(1 / (1 + 2 * g) ** 2, rel=1e-5)
    assert k[0, 0, 1, 1].item() == pytest.approx(0.3987, abs=1e-4)
    t = target_maps(torch.tensor([[[2.0, 2.0], [0.0, 0.0]]]), (5, 5))
    torch.testing.assert_close(t[0, 0, 1:4, 1:4], k[0, 0], rtol=1e-4, atol=1e-6)
    assert t[0, 0, 0].abs().sum() < 1e-5  # nothing two cells away
    # zero padding (F.conv2d(padding=1)): a corner target keeps only the in-grid part of the kernel
    assert t[0, 1].sum().item() == pytest.approx(((1 + g) / (1 + 2 * g)) ** 2, rel=1e-4)


def test_pixels_map_to_cells_as_in_the_public_code():
    """x·w/W: pixel 8j of a 64-pixel image is cell j of an 8-cell grid (no align-corners stretch)."""
    cells = pixels_to_grid(torch.tensor([[[8.0, 56.0], [63.0, 0.0]]]), (64, 64), (8, 8))
    torch.testing.assert_close(cells, torch.tensor([[[1.0, 7.0], [7.875, 0.0]]]))
    assert pixels_to_grid(torch.tensor([[[40.0, 30.0]]]), (60, 80), (15, 20)).tolist() == [[[10.0, 7.5]]]


def test_position_bce_is_the_summed_binary_cross_entropy_of_the_softmax():
    rows = torch.randn(2, 3, 4, 5)
    targets = torch.rand(2, 3, 4, 5)
    p = torch.softmax(rows.view(2, 3, -1), -1)
    t = targets.view(2, 3, -1)
    expected = -(t * p.log() + (1 - t) * (1 - p).log()).sum(-1)
    torch.testing.assert_close(position_bce(rows, targets), expected, rtol=1e-5, atol=1e-5)


def test_sample_volume_rows_is_bilinear_over_source_cells():
    corr = torch.randn(1, 3, 4, 2, 5)
    rows = sample_volume_rows(corr, torch.tensor([[[2.0, 1.0], [0.5, 0.0], [3.0, 2.5]]]))
    torch.testing.assert_close(rows[0, 0], corr[0, 1, 2])
    torch.testing.assert_close(rows[0, 1], (corr[0, 0, 0] + corr[0, 0, 1]) / 2)
    torch.testing.assert_close(rows[0, 2], (corr[0, 2, 3] + corr[0, 2, 3]) / 2)  # clamped at the bottom border


# ----------------------------------------------------------------------------- the objective

SIZE = (64, 64)  # pixels: cell j of an 8-cell grid sits at pixel 8j, of a 4-cell grid at 16j
GRIDS = [((8, 8), (8, 8)), ((4, 4), (4, 4))]


def keypoints():
    src = torch.tensor([[[16.0, 32.0], [48.0, 32.0], [48.0, 48.0]]])
    trg = torch.tensor([[[32.0, 16.0], [32.0, 48.0], [0.0, 64.0]]])
    return src, trg


def volumes_from(fn):
    """Per-level volumes whose row for source cell (i, j) is fn(level, i, j) → (h, w) scores."""
    out = []
    for (ga, gb) in GRIDS:
        v = torch.zeros(1, *ga, *gb)
        for i in range(ga[0]):
            for j in range(ga[1]):
                v[0, i, j] = fn(ga, gb, i, j)
        out.append(v)
    return out


def true_match(ga, gb, i, j):
    """The synthetic pairs' ground truth: source cell (i, j) ↔ target cell at the transferred keypoint."""
    src, trg = keypoints()
    g_src = pixels_to_grid(src, SIZE, ga)[0]
    g_trg = pixels_to_grid(trg, SIZE, gb)[0]
    for s, t in zip(g_src, g_trg):
        ty, tx = int(round(float(t[1]))), int(round(float(t[0])))
        if round(float(s[1])) == i and round(float(s[0])) == j and 0 <= ty < gb[0] and 0 <= tx < gb[1]:
            return ty, tx
    return None


def loss_of(vols, src=None, trg=None):
    s, t = keypoints()
    src = s if src is None else src
    trg = t if trg is None else trg
    return multiscale_keypoint_loss(volume_row_sampler(vols), GRIDS, src, trg, SIZE, SIZE)


def one_hot(beta, wrong=False):
    def fn(ga, gb, i, j):
        row = torch.zeros(gb)
        m = true_match(ga, gb, i, j)
        if m is not None:
            y, x = m
            row[(y + 3) % gb[0] if wrong else y, x] = beta
        return row

    vols = volumes_from(fn)
    # the reverse direction reads the same volume transposed: a one-hot there too
    return vols


def test_one_hot_correlation_scores_lower_than_uniform_and_wrong_ones():
    uniform, _ = loss_of(volumes_from(lambda ga, gb, i, j: torch.zeros(gb)))
    right, logs = loss_of(one_hot(3.0))
    wrong, _ = loss_of(one_hot(3.0, wrong=True))
    assert right < uniform < wrong
    assert logs["keypoints"] == 2  # (48, 48) ↔ (0, 64) lies outside the 64-pixel target image
    assert set(logs) == {"loss", "loss_level0", "loss_level1", "keypoints"}
    torch.testing.assert_close(torch.tensor(logs["loss_level0"] + logs["loss_level1"]), right)
    # a saturated one-hot is not what BCE against a blurred target rewards
    saturated, _ = loss_of(one_hot(30.0))
    assert saturated > uniform


def test_nan_keypoints_are_ignored():
    vols = volumes_from(lambda ga, gb, i, j: torch.randn(gb))
    src, trg = keypoints()
    base, logs = loss_of(vols, src[:, :2], trg[:, :2])
    nan = torch.full((1, 2, 2), float("nan"))
    src_n = torch.cat([src[:, :2], nan[:, :1], torch.tensor([[[9.0, 9.0]]])], 1)
    trg_n = torch.cat([trg[:, :2], torch.tensor([[[9.0, 9.0]]]), torch.tensor([[[float("nan"), 9.0]]])], 1)
    with_nan, logs_nan = loss_of(vols, src_n, trg_n)
    assert torch.isfinite(with_nan)
    torch.testing.assert_close(with_nan, base)
    assert logs_nan["keypoints"] == logs["keypoints"] == 2
    empty, logs_empty = loss_of(vols, nan, nan)
    assert empty.item() == 0 and logs_empty["keypoints"] == 0


def test_loss_is_divided_by_the_batch_size_and_sums_directions():
    vols = volumes_from(lambda ga, gb, i, j: torch.randn(gb))
    src, trg = keypoints()
    single, _ = loss_of(vols)
    double_vols = [torch.cat([v, v]) for v in vols]
    double, _ = multiscale_keypoint_loss(
        volume_row_sampler(double_vols), GRIDS, torch.cat([src, src]), torch.cat([trg, trg]), SIZE, SIZE
    )
    torch.testing.assert_close(double, single)
    # by hand for level 1, one keypoint, both directions
    s, t = src[:, :1], trg[:, :1]
    total = 0
    for v, a, b in ((vols[1], s, t), (vols[1].permute(0, 3, 4, 1, 2), t, s)):
        rows = sample_volume_rows(v, pixels_to_grid(a, SIZE, (4, 4)))
        total = total + position_bce(rows, target_maps(pixels_to_grid(b, SIZE, (4, 4)), (4, 4))).sum()
    got, _ = multiscale_keypoint_loss(volume_row_sampler(vols[1:]), GRIDS[1:], s, t, SIZE, SIZE)
    torch.testing.assert_close(got, total)


def test_gradient_pushes_scores_towards_the_true_match():
    vol = torch.zeros(1, 4, 4, 4, 4, requires_grad=True)
    src = torch.tensor([[[16.0, 16.0]]])  # cell (1, 1)
    trg = torch.tensor([[[32.0, 48.0]]])  # cell (2, 3) → row 3, column 2
    loss, _ = multiscale_keypoint_loss(volume_row_sampler([vol]), GRIDS[1:], src, trg, (64, 64), (64, 64))
    loss.backward()
    g = vol.grad[0, 1, 1]
    assert F.softmax(-g.flatten(), 0).argmax() == 3 * 4 + 2
