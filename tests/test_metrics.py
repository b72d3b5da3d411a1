"""semcorr.metrics against hand-computed cases."""

import math

import numpy as np
import pytest

from semcorr.metrics import (
    CURVE_ALPHAS,
    bbox_side,
    correct_keypoints,
    dense_correct,
    dense_errors,
    group_mean,
    image_side,
    keypoint_box_side,
    keypoint_errors,
    label_transfer_accuracy,
    mask_iou,
    mean_over_pairs,
    pck,
    pooled_over_keypoints,
    spair_level,
    threshold_length,
)

NAN = np.nan


def test_keypoint_errors_are_euclidean_with_nan_ignored_and_missing_predictions_infinite():
    gt = np.array([[0.0, 0.0], [10.0, 10.0], [NAN, NAN], [5.0, 5.0]])
    pred = np.array([[3.0, 4.0], [10.0, 10.0], [1.0, 1.0], [NAN, NAN]])
    err = keypoint_errors(pred, gt)
    assert err[0] == 5.0 and err[1] == 0.0
    assert math.isnan(err[2])  # invisible ground truth: not evaluated
    assert math.isinf(err[3])  # visible but no prediction: a miss


def test_keypoint_errors_respect_the_valid_mask():
    gt = np.array([[0.0, 0.0], [1.0, 1.0]])
    err = keypoint_errors(gt + 1.0, gt, valid=np.array([True, False]))
    assert err[0] == pytest.approx(math.sqrt(2)) and math.isnan(err[1])


def test_reference_lengths():
    assert image_side((300, 500)) == 500.0
    assert bbox_side([10, 20, 110, 70]) == 100.0
    assert bbox_side([0, 0, 30, 80]) == 80.0
    kps = np.array([[10.0, 5.0], [40.0, 25.0], [NAN, NAN], [20.0, 60.0]])
    assert keypoint_box_side(kps) == 55.0  # x: 10..40 (30), y: 5..60 (55)
    assert math.isnan(keypoint_box_side(np.full((3, 2), NAN)))
    assert threshold_length("img", size=(200, 100)) == 200.0
    assert threshold_length("bbox", bbox=[0, 0, 50, 20]) == 50.0
    assert threshold_length("kps", kps=kps) == 55.0
    with pytest.raises(ValueError):
        threshold_length("bbox")
    with pytest.raises(ValueError):
        threshold_length("diag", size=(1, 1))


def test_pck_counts_error_at_most_alpha_L_and_ignores_nan():
    # L = 100; errors 4, 5 (= 0.05·L, counts), 9, 15, 30, NaN (ignored)
    err = np.array([4.0, 5.0, 9.0, 15.0, 30.0, NAN])
    correct, n = correct_keypoints(err, 100.0, [0.05, 0.1, 0.15])
    assert n == 5
    assert correct.tolist() == [2, 3, 4]
    np.testing.assert_allclose(pck(err, 100.0, [0.05, 0.1, 0.15]), [0.4, 0.6, 0.8])


def test_minus_one_padding_does_not_inflate_pck():
    """The padded points of a PF-WILLOW/PF-PASCAL list must not count, neither as hits nor in the total."""
    from semcorr.datasets.base import pad_to_nan

    gt = pad_to_nan(np.array([[10.0, 10.0], [20.0, 20.0], [-1.0, -1.0], [-1.0, -1.0]]))
    pred = np.array([[10.0, 10.0], [50.0, 50.0], [-1.0, -1.0], [-1.0, -1.0]])  # padded "predictions" equal the padding
    err = keypoint_errors(pred, gt)
    assert pck(err, 100.0, [0.1]).tolist() == [0.5]  # not 3/4 as when padding is scored


def test_pck_of_a_pair_without_visible_points_is_nan():
    assert np.isnan(pck(np.array([NAN, NAN]), 10.0, [0.1])).all()


def test_mean_over_pairs_differs_from_pooled():
    # pair 1: 1 of 2 correct; pair 2: 8 of 8; pair 3: nothing evaluated
    correct = np.array([[1], [8], [0]])
    counts = np.array([2, 8, 0])
    np.testing.assert_allclose(mean_over_pairs(correct, counts), [(0.5 + 1.0) / 2])
    np.testing.assert_allclose(pooled_over_keypoints(correct, counts), [9 / 10])
    assert np.isnan(mean_over_pairs(np.zeros((1, 2)), np.array([0]))).all()


def test_group_mean_skips_nan_rows():
    values = np.array([[0.5], [1.0], [NAN], [0.2]])
    out = group_mean(values, ["a", "a", "b", "b"])
    assert out["a"].tolist() == [0.75] and out["b"].tolist() == pytest.approx([0.2])


def test_spair_levels():
    assert spair_level("viewpoint_variation", 2) == "hard"
    assert spair_level("truncation", 2) == "tgt"
    assert spair_level("occlusion", 3) == "both"
    with pytest.raises(ValueError):
        spair_level("scale_variation", 3)


def test_dense_pck_over_the_mask():
    gt = np.zeros((2, 3, 2))
    pred = gt.copy()
    pred[0, 0] = [3.0, 4.0]  # error 5
    pred[0, 1] = [0.0, 20.0]  # error 20
    gt[1, 2] = NAN  # unknown ground truth: not evaluated
    mask = np.array([[True, True, True], [False, True, True]])
    err = dense_errors(pred, gt)
    assert err[0, 0] == 5.0 and err[0, 1] == 20.0 and np.isnan(err[1, 2])
    # evaluated pixels: (0,0) 5, (0,1) 20, (0,2) 0, (1,1) 0 → 4; L = 100
    correct, n = dense_correct(pred, gt, mask, 100.0, [0.05, 0.1, 0.25])
    assert n == 4 and correct.tolist() == [3, 3, 4]


def test_label_transfer_accuracy_and_iou():
    gt = np.zeros((4, 4), bool)
    gt[:2, :2] = True  # 4 pixels
    pred = np.zeros((4, 4), bool)
    pred[:2, 1:3] = True  # 4 pixels, 2 shared
    assert label_transfer_accuracy(pred, gt) == 12 / 16  # 2 + 2 wrong pixels
    assert mask_iou(pred, gt) == 2 / 6
    assert mask_iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 1.0


def test_curve_grid():
    assert CURVE_ALPHAS[0] == 0.01 and CURVE_ALPHAS[-1] == 0.3 and len(CURVE_ALPHAS) == 30
