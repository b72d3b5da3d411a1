"""MMNet's per-scale view of one source point (core/models/mmnet_viz.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from semcorr.images import image_to_tensor
from semcorr.losses.mmnet import sample_volume_rows
from semcorr.models.mmnet import build_mmnet
from semcorr.models.mmnet_viz import (
    ScaleHeatmap,
    draw_per_scale,
    heat_colours,
    mmnet_panels,
    per_scale_figure,
    per_scale_heatmaps,
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_mmnet("mobilenet_v2")


def pictures():
    rng = np.random.default_rng(0)
    a = Image.fromarray(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8))
    b = Image.fromarray(rng.integers(0, 255, (64, 112, 3), dtype=np.uint8))
    return a, b


def test_heatmaps_are_the_softmax_of_each_levels_row(model):
    a, b = pictures()
    ta, tb = image_to_tensor(a, (64, 64)), image_to_tensor(b, (64, 96))
    point = (36.0, 20.0)  # cell (9, 5) of the stride-4 grid (16 × 16), since 63 / 15 = 4.2 px per cell
    hms = per_scale_heatmaps(model, ta, tb, point)
    assert [h.level for h in hms] == [0, 1, 2, 3] and [h.stride for h in hms] == [4, 8, 16, 32]
    assert [tuple(h.prob.shape) for h in hms] == [(16, 24), (8, 12), (4, 6), (2, 3)]
    with torch.no_grad():
        maps_a, maps_b = model.encode_images(ta, tb)
        vols = model.volumes(maps_a, maps_b)
    for h in hms:
        ga = maps_a[h.level].shape[-2:]
        p = torch.tensor([[[point[0] * (ga[1] - 1) / 63, point[1] * (ga[0] - 1) / 63]]])
        row = sample_volume_rows(vols[h.level], p)[0, 0]
        torch.testing.assert_close(h.prob, torch.softmax(row.flatten(), 0).view_as(row), rtol=1e-4, atol=1e-6)
        iy, ix = divmod(int(row.argmax()), row.shape[1])
        assert h.best == pytest.approx((ix * 95 / (row.shape[1] - 1), iy * 63 / (row.shape[0] - 1)), abs=1e-3)


def test_drawing_puts_panels_side_by_side(model):
    a, b = pictures()
    fig, hms = per_scale_figure(model, a, b, (40.0, 30.0), size=64)
    assert len(hms) == 4
    assert fig.size == (96 + 4 * 112 + 4 * 6, 80 + 16)
    for h in hms:
        assert 0 <= h.best[0] <= 111 and 0 <= h.best[1] <= 63  # back in target-image pixels
    # the source marker is green at the point; a heatmap of all mass on one cell is red there
    assert fig.getpixel((40 + 4, 16 + 30))[1] > 200
    prob = torch.zeros(2, 2)
    prob[1, 0] = 1
    one = draw_per_scale(a, b, (1.0, 1.0), [ScaleHeatmap(3, 32, prob, (0.0, 63.0))])
    r, g, bl = one.getpixel((96 + 6 + 10, 16 + 50))
    assert r > 150 and bl < 100


def test_heat_colours_ramp():
    c = heat_colours(np.array([[0.0, 1.0, 0.5]]))
    assert c[0, 0].tolist() == [0, 0, 128] and c[0, 1].tolist() == [220, 0, 0]
    assert c[0, 2, 2] < 200 and c[0, 2, 0] > 100


def test_show_panels_are_the_same_heatmaps_coarsest_first(model):
    a, b = pictures()
    ta, tb = image_to_tensor(a, (64, 64)), image_to_tensor(b, (64, 96))
    point = (36.0, 20.0)
    layers = model.required_layers
    with torch.no_grad():
        panels = mmnet_panels(model, model.backbone(ta, layers), model.backbone(tb, layers), (2 * 36 / 63 - 1, 2 * 20 / 63 - 1))
    hms = per_scale_heatmaps(model, ta, tb, point)
    assert [t for t, _ in panels] == ["stride 32", "stride 16", "stride 8", "stride 4"]
    for (_, heat), hm in zip(panels, reversed(hms)):
        np.testing.assert_allclose(heat, hm.prob.numpy(), rtol=1e-5, atol=1e-7)
    from semcorr.viz import heatmap_figure

    fig = heatmap_figure(a, point, b, panels, height=64)
    assert fig.height > 64 and fig.width > 4 * 64
