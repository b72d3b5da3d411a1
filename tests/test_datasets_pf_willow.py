"""PF-WILLOW reader: the shared 450-pair development part, and generated look-alikes."""

import csv

import numpy as np
import pytest
import scipy.io
from PIL import Image

from conftest import WILLOW
from semcorr.datasets import PFWillow, open_dataset
from semcorr.errors import DataError, UsageError

needs_willow = pytest.mark.skipif(not (WILLOW / "test_pairs_pf.csv").is_file(), reason="shared PF-WILLOW not present")


def _header(n=10):
    return ["imageA", "imageB"] + [f"{c}{i}" for c in ("XA", "YA", "XB", "YB") for i in range(1, n + 1)]


@needs_willow
def test_shared_pairs_categories_and_first_pair():
    ds = open_dataset("pf-willow", WILLOW)
    assert len(ds) == 450
    assert ds.categories == ["car(G)", "car(M)", "duck(S)", "motorbike(G)", "winebottle(M)"]
    assert sum(e.category == "duck(S)" for e in ds.entries) == 90
    p = ds[0]
    assert p.src_name == "PF-dataset/car(G)/Cars_006a.png" and p.trg_name == "PF-dataset/car(G)/Cars_007a.png"
    assert p.src_path == WILLOW / "PF-dataset/car(G)/Cars_006a.png"
    assert p.src_kps.shape == (10, 2) and p.src_kps.dtype == np.float64
    # first CSV values XA1 = 47.9352806414662, YA1 = 98.1586483390607, read one-based → minus 1
    np.testing.assert_allclose(p.src_kps[0], [46.9352806414662, 97.1586483390607])
    np.testing.assert_allclose(p.trg_kps[0], [37.4480199953136, 158.21073185972])  # XB1, YB1 minus 1
    assert p.src_size == (200, 300)  # (H, W) of the 300×200 PNG
    np.testing.assert_allclose(p.src_bbox, np.r_[p.src_kps.min(0), p.src_kps.max(0)])
    assert p.meta["bbox_from"] == "keypoints"


@needs_willow
def test_raw_coordinates_and_mat_files_agree_with_the_csv():
    raw = open_dataset("pf-willow", WILLOW, coords="raw")
    one = open_dataset("pf-willow", WILLOW)
    mat = open_dataset("pf-willow", WILLOW, keypoints="mat")
    for i in (0, 100, 449):
        np.testing.assert_allclose(raw[i].src_kps - 1.0, one[i].src_kps)
        np.testing.assert_allclose(mat[i].src_kps, one[i].src_kps, atol=1e-9)
        np.testing.assert_allclose(mat[i].trg_kps, one[i].trg_kps, atol=1e-9)


@needs_willow
def test_iteration_and_negative_index():
    ds = open_dataset("pf-willow", WILLOW)
    assert ds[-1].pair_id == ds.entries[449].pair_id
    with pytest.raises(IndexError):
        ds[450]
    assert sum(1 for _ in zip(range(3), ds)) == 3


def test_wrong_root_names_the_missing_file(tmp_path):
    with pytest.raises(DataError, match="test_pairs_pf.csv.*Proposal Flow"):
        open_dataset("pf-willow", tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        open_dataset("pf-willow", tmp_path / "nowhere")


def test_lookalike_with_padding_and_mat_keypoints(tmp_path):
    cat = tmp_path / "PF-dataset" / "duck(S)"
    cat.mkdir(parents=True)
    Image.new("RGB", (40, 30)).save(cat / "a.png")
    Image.new("RGB", (50, 20)).save(cat / "b.png")
    xa, ya = [1, 2, 3, -1], [4, 5, 6, -1]
    xb, yb = [11, 12, -1, 14], [15, 16, -1, 18]
    with open(tmp_path / "test_pairs_pf.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(_header(4))
        w.writerow(["PF-dataset/duck(S)/a.png", "PF-dataset/duck(S)/b.png", *xa, *ya, *xb, *yb])
    scipy.io.savemat(cat / "a.mat", {"pts_coord": np.array([xa, ya], dtype=float)})
    scipy.io.savemat(cat / "b.mat", {"pts_coord": np.array([xb, yb], dtype=float)})
    for ds in (PFWillow(tmp_path), PFWillow(tmp_path, keypoints="mat")):
        p = ds[0]
        assert p.category == "duck(S)" and p.src_size == (30, 40) and p.trg_size == (20, 50)
        np.testing.assert_array_equal(p.src_kps[:3], [[0, 3], [1, 4], [2, 5]])
        assert np.isnan(p.src_kps[3]).all() and np.isnan(p.trg_kps[2]).all()  # -1 padding → NaN
        np.testing.assert_array_equal(p.trg_bbox, [10, 14, 13, 17])


def test_bad_rows_and_options(tmp_path):
    with open(tmp_path / "test_pairs_pf.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(_header(2))
        w.writerow(["a.png", "b.png", 1, 2])
    with pytest.raises(DataError, match="row 2"):
        PFWillow(tmp_path)
    with pytest.raises(UsageError):
        PFWillow(tmp_path, coords="zero")
    with pytest.raises(UsageError):
        open_dataset("pf-willow", tmp_path, bogus=1)
    with pytest.raises(UsageError, match="unknown dataset"):
        open_dataset("willow", tmp_path)
