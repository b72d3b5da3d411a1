"""Per-pair scoring: flow sampling, directions, thresholds, rescaled measuring, masks, TSS flip handling."""

import numpy as np
import pytest
from PIL import Image

from semcorr.datasets import FlowPair, KeypointPair, MaskPair
from semcorr.errors import DataError
from semcorr.evaluate import PredictorSource, mirror_flows
from semcorr.evaluate.scoring import MISSING_ERROR, sample_flow, score_flow, score_keypoints, score_mask
from semcorr.geometry import pixel_grid
from semcorr.protocols import customize, get_protocol

CUSTOM = get_protocol("custom")


def grid(h, w):
    return pixel_grid(h, w).numpy().astype(np.float32)


def kp_pair(src_kps, trg_kps, src_size=(30, 40), trg_size=(30, 40), src_bbox=None, trg_bbox=None):
    return KeypointPair("p", None, None, "a.png", "b.png", np.array(src_kps, float), np.array(trg_kps, float), "c",
                        src_bbox, trg_bbox, src_size, trg_size)  # fmt: skip


def test_sample_flow_bilinear_nearest_and_clamping():
    g = grid(4, 5)
    flow = np.stack([2 * g[..., 0], g[..., 1] + 1], -1)  # (x, y) → (2x, y + 1)
    pts = np.array([[1.5, 2.0], [1.4, 2.6], [np.nan, np.nan], [5.0, 1.0]])
    bil = sample_flow(pts, flow, "bilinear")
    np.testing.assert_allclose(bil[0], [3.0, 3.0], atol=1e-6)
    np.testing.assert_allclose(bil[1], [2.8, 3.6], atol=1e-6)
    assert np.isnan(bil[2]).all()
    np.testing.assert_allclose(bil[3], [8.0, 2.0], atol=1e-6)  # x = W = 5 clamped to the last column, 4
    near = sample_flow(pts, flow, "nearest")
    np.testing.assert_allclose(near[1], [2.0, 4.0])  # read at the rounded pixel (1, 3)


def test_src_to_trg_errors_and_reference_lengths():
    src = [[5, 5], [10, 10], [np.nan, np.nan]]
    trg = [[8, 9], [13, 14], [1, 1]]
    st = grid(30, 40) + np.float32([3, 0])  # predicts a (3, 0) shift; the truth is (3, 4)
    ts = grid(30, 40) - np.float32([3, 0])
    pair = kp_pair(src, trg, trg_bbox=[0, 0, 20, 10])
    out = score_keypoints(pair, st, ts, CUSTOM)
    assert out["errors"] == pytest.approx([4.0, 4.0, None]) and out["n"] == 2
    assert out["L"] == 40.0  # img: max(H, W) of the target
    assert score_keypoints(pair, st, ts, customize(CUSTOM, threshold="bbox"))["L"] == 20.0
    assert score_keypoints(pair, st, ts, customize(CUSTOM, threshold="kps"))["L"] == 13.0  # all visible target points: x 1..13, y 1..14


def test_trg_to_src_uses_the_other_flow_and_measures_in_the_source():
    pair = kp_pair([[5, 5]], [[8, 9]], src_size=(30, 40), trg_size=(60, 20), src_bbox=[0, 0, 7, 30])
    st = np.full((30, 40, 2), np.nan, np.float32)  # must not be used
    ts = grid(60, 20) - np.float32([3, 3])  # (8, 9) → (5, 6): error 1
    p = customize(CUSTOM, direction="trg->src")
    out = score_keypoints(pair, st, ts, p)
    assert out["errors"] == pytest.approx([1.0]) and out["L"] == 40.0
    assert score_keypoints(pair, st, ts, customize(p, threshold="bbox"))["L"] == 30.0


def test_measuring_after_rescaling_to_224():
    """NC-Net's procedure: points of the measured image scaled to 224×224, L = 224."""
    pair = kp_pair([[10, 10]], [[10, 10]], src_size=(112, 448), trg_size=(112, 448))
    st = grid(112, 448) + np.float32([4, 2])  # error (4, 2) px in a 448×112 image
    out = score_keypoints(pair, st, st, customize(CUSTOM, measure_size=(224, 224)))
    assert out["L"] == 224.0
    assert out["errors"][0] == pytest.approx(np.hypot(4 * 224 / 448, 2 * 224 / 112))


def test_missing_predictions_count_as_misses_and_sizes_are_checked():
    pair = kp_pair([[5, 5], [6, 6]], [[5, 5], [6, 6]])
    st = grid(30, 40)
    st[5, 5] = np.nan
    out = score_keypoints(pair, st, st, CUSTOM)
    assert out["errors"][0] == MISSING_ERROR and out["errors"][1] == pytest.approx(0.0, abs=1e-5) and out["n"] == 2
    with pytest.raises(DataError, match="40x30"):
        score_keypoints(pair, grid(31, 40), grid(30, 40), CUSTOM)
    with pytest.raises(DataError, match="object box"):
        score_keypoints(pair, st, st, customize(CUSTOM, threshold="bbox"))


def test_mask_transfer_scores():
    src_mask = np.zeros((4, 4), bool)
    src_mask[:, :2] = True
    trg_mask = np.zeros((4, 4), bool)
    trg_mask[:, 1:3] = True
    pair = MaskPair("m", None, None, "a", "b", "c", np.zeros((3, 2)), np.zeros((3, 2)), src_mask, trg_mask, (4, 4), (4, 4))
    ident = grid(4, 4)
    out = score_mask(pair, ident, ident, get_protocol("caltech-101"))
    assert out["lt_acc"] == 0.5 and out["iou"] == pytest.approx(4 / 12)
    shift = ident - np.float32([1, 0])  # target pixel x reads source pixel x − 1: the mask moves right by one
    out = score_mask(pair, ident, shift, get_protocol("caltech-101"))
    assert out["lt_acc"] == 1.0 and out["iou"] == 1.0


def _mirror_pair(tmp_path, flip: bool) -> FlowPair:
    """A target that is the mirrored source: the true flows are x → W − 1 − x both ways."""
    h, w = 6, 8
    rng = np.random.default_rng(1)
    src = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    Image.fromarray(src).save(tmp_path / "a.png")
    Image.fromarray(src[:, ::-1].copy()).save(tmp_path / "b.png")
    g = grid(h, w)
    truth = np.stack([w - 1 - g[..., 0], g[..., 1]], -1)
    mask = np.ones((h, w), bool)
    return FlowPair("t", tmp_path / "a.png", tmp_path / "b.png", "a.png", "b.png", "X", truth, truth.copy(), mask, mask, flip, (h, w), (h, w))


class Identity:
    """Matches each pixel to the same position: right only when the two images are aligned."""

    def predict(self, src, trg):
        return grid(src.height, src.width), grid(trg.height, trg.width)


def test_flip_handling_runs_the_model_on_the_mirrored_source(tmp_path):
    pair = _mirror_pair(tmp_path, flip=True)
    tss = get_protocol("tss")
    flows = PredictorSource(Identity(), flip="gt").flows(pair)
    out = score_flow(pair, *flows, tss)
    i = out["alphas"].index(0.05)
    assert out["src_to_trg"]["correct"][i] == out["src_to_trg"]["n"] == 48
    assert out["trg_to_src"]["correct"][i] == 48
    # without flip handling the same model is wrong away from the centre column
    plain = score_flow(pair, *PredictorSource(Identity(), flip="none").flows(pair), tss)
    assert plain["src_to_trg"]["correct"][i] == 0  # L = 8 → 0.4 px; every |2x − 7| ≥ 1
    # pairs not flagged are never mirrored
    unflagged = _mirror_pair(tmp_path, flip=False)
    st, _ = PredictorSource(Identity(), flip="gt").flows(unflagged)
    np.testing.assert_array_equal(st, grid(6, 8))


def test_mirror_flows_is_an_involution():
    rng = np.random.default_rng(0)
    st = rng.normal(size=(3, 5, 2)).astype(np.float32)
    ts = rng.normal(size=(4, 2, 2)).astype(np.float32)
    a, b = mirror_flows(*mirror_flows(st, ts, 5), 5)
    np.testing.assert_allclose(a, st) and np.testing.assert_allclose(b, ts)
