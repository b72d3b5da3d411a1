"""TSS reader on the official 6-folder sample, and the Middlebury .flo reader/writer."""

import numpy as np
import pytest

from conftest import SHARED
from semcorr.datasets import TSS, open_dataset
from semcorr.errors import DataError, UsageError
from semcorr.io.middlebury_flo import absolute_to_displacement, displacement_to_absolute, read_flo, write_flo

TSS_ROOT = SHARED / "tss-sample" / "TSS_CVPR2016"
needs_tss = pytest.mark.skipif(not TSS_ROOT.is_dir(), reason="shared TSS sample not present")


def test_flo_round_trip_with_unknown_flow(tmp_path):
    rng = np.random.default_rng(0)
    flow = rng.normal(0, 20, (7, 5, 2)).astype(np.float32)
    flow[2, 3] = np.nan
    write_flo(tmp_path / "f.flo", flow)
    raw = (tmp_path / "f.flo").read_bytes()
    assert raw[:4] == b"PIEH" and len(raw) == 12 + 7 * 5 * 2 * 4
    assert np.frombuffer(raw[4:12], "<i4").tolist() == [5, 7]  # width then height
    back = read_flo(tmp_path / "f.flo")
    assert back.shape == (7, 5, 2) and np.isnan(back[2, 3]).all()
    mask = ~np.isnan(flow).any(axis=2)
    np.testing.assert_array_equal(back[mask], flow[mask])


def test_flo_errors(tmp_path):
    (tmp_path / "bad.flo").write_bytes(b"XXXX" + b"\0" * 8)
    with pytest.raises(DataError, match="magic"):
        read_flo(tmp_path / "bad.flo")
    write_flo(tmp_path / "ok.flo", np.zeros((4, 4, 2)))
    (tmp_path / "cut.flo").write_bytes((tmp_path / "ok.flo").read_bytes()[:-8])
    with pytest.raises(DataError, match="truncated"):
        read_flo(tmp_path / "cut.flo")
    with pytest.raises(DataError, match="does not exist"):
        read_flo(tmp_path / "none.flo")


def test_displacement_and_absolute_are_inverse():
    disp = np.zeros((2, 3, 2), np.float32)
    disp[1, 2] = [0.5, -1.0]
    ab = displacement_to_absolute(disp)
    assert ab[1, 2].tolist() == [2.5, 0.0] and ab[0, 1].tolist() == [1.0, 0.0]
    np.testing.assert_array_equal(absolute_to_displacement(ab), disp)


@needs_tss
def test_sample_pairs_subsets_and_flip():
    ds = open_dataset("tss", TSS_ROOT.parent)  # the folder holding TSS_CVPR2016/ is accepted too
    assert [e.pair_id for e in ds.entries] == [
        "FG3DCar/001_005", "FG3DCar/001_021", "JODS/car_01_02", "JODS/car_03_04", "PASCAL/bike_01_02", "PASCAL/bike_01_03",
    ]  # fmt: skip
    assert ds.categories == ["FG3DCar", "JODS", "PASCAL"]
    assert [p.flip for p in ds] == [False, False, False, False, False, True]
    assert len(TSS(TSS_ROOT, subsets=["JODS"])) == 2


@needs_tss
def test_ground_truth_flow_matches_the_kits_correspondences():
    """flow1 maps image1 to image2 (corr.txt, normalised x1 y1 x2 y2), also for the flipped pair."""
    ds = open_dataset("tss", TSS_ROOT)
    for i in (0, 4, 5):
        p = ds[i]
        h1, w1 = p.src_size
        h2, w2 = p.trg_size
        corr = np.loadtxt(TSS_ROOT / p.pair_id / "corr.txt")
        errors, mirrored = [], []
        for x1, y1, x2, y2 in corr:
            xi, yi = min(int(round(x1 * w1)), w1 - 1), min(int(round(y1 * h1)), h1 - 1)
            end = p.flow_src_to_trg[yi, xi]
            if np.isfinite(end).all():
                errors.append(np.hypot(end[0] - x2 * w2, end[1] - y2 * h2))
                mirrored.append(np.hypot((w2 - 1 - end[0]) - x2 * w2, end[1] - y2 * h2))
        assert len(errors) >= 20
        assert np.median(errors) < 2.5 and max(errors) < 8  # clicked points vs the interpolated flow
        assert np.median(mirrored) > 100  # the flow is not stored mirrored, even for the flip_gt pair
        # known flow exactly on the foreground
        assert np.array_equal(np.isfinite(p.flow_src_to_trg).all(axis=2), p.src_mask)
        assert p.flow_trg_to_src.shape[:2] == p.trg_size == p.trg_mask.shape


def test_wrong_root(tmp_path):
    with pytest.raises(DataError, match="FG3DCar.*TSS"):
        TSS(tmp_path)
    (tmp_path / "JODS" / "x").mkdir(parents=True)
    (tmp_path / "JODS" / "x" / "image1.png").write_bytes(b"")
    ds = TSS(tmp_path)
    with pytest.raises(DataError, match="image2.png"):
        ds[0]
    with pytest.raises(UsageError):
        TSS(tmp_path, subsets=["KITTI"])
