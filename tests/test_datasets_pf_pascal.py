"""PF-PASCAL reader: every shared pair list, and a generated look-alike root with images and annotations."""

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from conftest import SHARED
from semcorr.datasets import PASCAL_CLASSES, PFPascal, open_dataset
from semcorr.errors import DataError, UsageError

SPLITS = SHARED / "pf-pascal-splits"
needs_splits = pytest.mark.skipif(not SPLITS.is_dir(), reason="shared PF-PASCAL split files not present")


@needs_splits
@pytest.mark.parametrize(
    "pair_list,split,n,has_kps",
    [
        ("ncnet", "test", 299, True),
        ("ncnet", "val", 308, False),
        ("ncnet", "train", 2940, False),
        ("sfnet", "test", 299, True),
        ("sfnet", "val", 308, True),
        ("dccnet", "val", 308, True),
        ("weakalign", "test", 308, False),
        ("weakalign", "train", 2940, False),
    ],
)
def test_every_shared_list_parses(tmp_path, pair_list, split, n, has_kps):
    ds = open_dataset("pf-pascal", tmp_path, split=split, pair_list=pair_list, lists=SPLITS)
    assert len(ds) == n and ds.has_kps == has_kps
    assert set(ds.categories) <= set(PASCAL_CLASSES)
    if has_kps:
        p = ds[0]
        assert p.src_kps.shape == p.trg_kps.shape and np.isfinite(p.src_kps).all()
        assert p.src_name.startswith("PF-dataset-PASCAL/JPEGImages/")


@needs_splits
def test_ncnet_and_sfnet_test_lists_hold_the_same_keypoints(tmp_path):
    nc = open_dataset("pf-pascal", tmp_path, pair_list="ncnet", lists=SPLITS)
    sf = open_dataset("pf-pascal", tmp_path, pair_list="sfnet", lists=SPLITS)
    for i in (0, 150, 298):
        np.testing.assert_allclose(nc[i].src_kps, sf[i].src_kps)
    p = sf[0]
    # first row: class 1; 11 points; XA1 = 253.631662222222, YA1 = 58.1813333333333 (one-based → −1)
    assert p.category == "aeroplane" and len(p.src_kps) == 11
    np.testing.assert_allclose(p.src_kps[0], [252.631662222222, 57.1813333333333])
    # SFNet bbox "7.2;57.0;294.6;138.6" (one-based → −1) and its L_pck 287.4 = the box width
    np.testing.assert_allclose(p.src_bbox, [6.2, 56.0, 293.6, 137.6], atol=1e-9)
    assert p.meta["src_L_pck"] == pytest.approx(287.4)
    assert p.src_bbox[2] - p.src_bbox[0] == pytest.approx(p.meta["src_L_pck"])
    raw = open_dataset("pf-pascal", tmp_path, pair_list="sfnet", lists=SPLITS, coords="raw")[0]
    np.testing.assert_allclose(raw.src_kps[0], [253.631662222222, 58.1813333333333])


@needs_splits
def test_lookalike_root_with_images_and_annotations(tmp_path):
    """Small JPEGs and .mat annotations under the real names, with the shared NC-Net lists copied in."""
    (tmp_path / "image_pairs").mkdir()
    for name in ("test_pairs.csv", "train_pairs.csv"):
        shutil.copy(SPLITS / "ncnet_image_pairs" / name, tmp_path / "image_pairs" / name)
    rows = list(csv.reader(open(SPLITS / "ncnet_image_pairs" / "train_pairs.csv")))
    src, trg, cls, flip = rows[2]  # 2009_004055 → 2009_001354, class 6 (bus), flip 1
    jpeg = tmp_path / "PF-dataset-PASCAL" / "JPEGImages"
    ann = tmp_path / "PF-dataset-PASCAL" / "Annotations" / "bus"
    jpeg.mkdir(parents=True)
    ann.mkdir(parents=True)
    Image.new("RGB", (64, 48)).save(tmp_path / src)
    Image.new("RGB", (32, 40)).save(tmp_path / trg)
    kps_a = np.array([[1.0, 2.0], [np.nan, np.nan], [5.0, 6.0]])
    kps_b = np.array([[11.0, 12.0], [13.0, 14.0], [np.nan, np.nan]])
    scipy.io.savemat(ann / (Path(src).stem + ".mat"), {"kps": kps_a, "bbox": np.array([[1.0, 1.0, 60.0, 40.0]])})
    scipy.io.savemat(ann / (Path(trg).stem + ".mat"), {"kps": kps_b, "bbox": np.array([[2.0, 3.0, 30.0, 33.0]])})
    ds = PFPascal(tmp_path, split="train")
    p = ds[1]
    assert p.category == PASCAL_CLASSES[int(cls) - 1] == "bus"
    assert p.meta["flip"] is True and p.meta["class_id"] == 6
    assert p.src_size == (48, 64) and p.trg_size == (40, 32)
    np.testing.assert_array_equal(p.src_kps[0], [0.0, 1.0])
    assert np.isnan(p.src_kps[1]).all() and np.isnan(p.trg_kps[2]).all()
    np.testing.assert_array_equal(p.trg_bbox, [1.0, 2.0, 29.0, 32.0])
    # the test list (with keypoints) still resolves the images of the same root
    test = PFPascal(tmp_path)
    assert len(test) == 299 and test[0].src_size is None  # its images were not generated


def test_missing_list_and_bad_options(tmp_path):
    with pytest.raises(DataError, match="ncnet test pair list.*Proposal Flow"):
        PFPascal(tmp_path)
    with pytest.raises(UsageError):
        PFPascal(tmp_path, split="dev")
    with pytest.raises(UsageError):
        PFPascal(tmp_path, pair_list="hpf")


def test_varying_lengths_and_class_names(tmp_path):
    with open(tmp_path / "pairs.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["source_image", "target_image", "class", "XA", "YA", "XB", "YB"])
        w.writerow(["a.jpg", "b.jpg", "dog", "1;2;3", "4;5;6", "7;8;9", "10;11;12"])
        w.writerow(["a.jpg", "b.jpg", "12", "1;2", "4;5", "7", "10"])
        w.writerow(["a.jpg", "b.jpg", "21", "1", "4", "7", "10"])
    with pytest.raises(DataError, match="outside 1..20"):
        PFPascal(tmp_path, pairs="pairs.csv")
    lines = open(tmp_path / "pairs.csv").read().splitlines()[:-1]
    (tmp_path / "pairs.csv").write_text("\n".join(lines) + "\n")
    ds = PFPascal(tmp_path, pairs="pairs.csv", coords="raw")
    assert [e.category for e in ds.entries] == ["dog", "dog"]
    np.testing.assert_array_equal(ds[0].trg_kps, [[7, 10], [8, 11], [9, 12]])
    with pytest.raises(DataError, match="2 source but 1 target"):
        ds[1]
