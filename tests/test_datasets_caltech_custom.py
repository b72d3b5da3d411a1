"""Caltech-101 mask-transfer reader (shared images, generated pair CSV) and the custom CSV reader."""

import csv

import numpy as np
import pytest
from PIL import Image

from conftest import SHARED
from semcorr.datasets import CALTECH_CLASSES, Caltech101, CustomPairs, open_dataset, polygon_mask
from semcorr.errors import DataError

CALTECH = SHARED / "caltech-101-subset"
needs_caltech = pytest.mark.skipif(not (CALTECH / "101_ObjectCategories").is_dir(), reason="shared Caltech-101 subset not present")


def test_polygon_mask_hand_computed():
    m = polygon_mask(np.array([[1, 1], [3, 1], [3, 3], [1, 3]]), (5, 6))
    assert m.shape == (5, 6) and m.sum() == 9
    assert m[1:4, 1:4].all() and not m[0].any() and not m[:, 4:].any()
    tri = polygon_mask(np.array([[0, 0], [4, 0], [0, 4]]), (5, 5))
    assert tri[0].sum() == 5 and tri[4, 0] and not tri[4, 4]
    assert not polygon_mask(np.array([[0, 0], [1, 1]]), (3, 3)).any()  # fewer than 3 vertices


@needs_caltech
def test_class_ids_follow_the_sorted_folders():
    folders = sorted(p.name for p in (CALTECH / "101_ObjectCategories").iterdir() if p.is_dir() and p.name != "BACKGROUND_Google")
    assert list(CALTECH_CLASSES) == folders and len(CALTECH_CLASSES) == 101


@needs_caltech
def test_generated_pair_list_on_shared_images(tmp_path):
    src, trg = "101_ObjectCategories/Faces/image_0001.jpg", "101_ObjectCategories/Faces/image_0002.jpg"
    with Image.open(CALTECH / src) as im:
        w, h = im.size
    with open(tmp_path / "test_pairs_caltech_with_category.csv", "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["source_image", "target_image", "class", "XA", "YA", "XB", "YB"])
        wr.writerow([src, trg, "1", "10,50,50,10", "20,20,60,60", "0,30,0", "0,0,30"])
        wr.writerow([src, trg, "ant", "10,50,50,10", "20,20,60,60", "0,30,0", "0,0,30"])
    ds = open_dataset("caltech-101", CALTECH, pairs=tmp_path / "test_pairs_caltech_with_category.csv")
    assert [e.category for e in ds.entries] == ["Faces", "ant"]
    p = ds[0]
    assert p.src_size == (h, w) and p.src_mask.shape == (h, w)
    assert p.src_mask.sum() == 41 * 41  # x 10..50, y 20..60 inclusive
    assert p.trg_mask.sum() == sum(31 - y for y in range(31))  # right triangle with legs of 31 pixels
    one = Caltech101(CALTECH, pairs=tmp_path / "test_pairs_caltech_with_category.csv", coords="one-based")[0]
    np.testing.assert_array_equal(one.src_polygon, p.src_polygon - 1)


def test_caltech_errors(tmp_path):
    with pytest.raises(DataError, match="pair list.*Caltech"):
        Caltech101(tmp_path)
    with open(tmp_path / "test_pairs_caltech_with_category.csv", "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["s", "t", "c", "XA", "YA", "XB", "YB"])
        wr.writerow(["a.jpg", "b.jpg", "102", "1,2,3", "1,2,3", "1,2,3", "1,2,3"])
    with pytest.raises(DataError, match="outside 1..101"):
        Caltech101(tmp_path)


def test_custom_csv(tmp_path):
    Image.new("RGB", (20, 10)).save(tmp_path / "a.png")
    Image.new("RGB", (30, 40)).save(tmp_path / "b.png")
    with open(tmp_path / "pairs.csv", "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["source_image", "target_image", "XA", "YA", "XB", "YB", "category", "target_bbox"])
        wr.writerow(["a.png", "b.png", "1;2;-1;4", "5;6;7;", "9;10;11;nan", "13;14;15;16", "toys", "0;0;29;39"])
        wr.writerow(["a.png", str(tmp_path / "b.png"), "1", "2", "3", "4", "", ""])
    ds = CustomPairs(tmp_path)
    assert ds.categories == ["all", "toys"]
    p = ds[0]
    assert p.src_size == (10, 20) and p.trg_size == (40, 30)
    np.testing.assert_array_equal(p.src_kps[:2], [[1, 5], [2, 6]])
    assert np.isnan(p.src_kps[2]).all()  # -1: not visible
    assert np.isnan(p.src_kps[3]).all()  # empty y
    assert np.isnan(p.trg_kps[3]).all()  # nan
    np.testing.assert_array_equal(p.trg_bbox, [0, 0, 29, 39])
    assert p.src_bbox is None
    assert ds[1].trg_path == tmp_path / "b.png" and ds[1].category == "all"


def test_custom_csv_errors(tmp_path):
    with pytest.raises(DataError, match="pairs.csv"):
        CustomPairs(tmp_path)
    (tmp_path / "pairs.csv").write_text("source_image,target_image,XA,YA\na,b,1,2\n")
    with pytest.raises(DataError, match="'XB' column"):
        CustomPairs(tmp_path)
    (tmp_path / "pairs.csv").write_text("source_image,target_image,XA,YA,XB,YB\na,b,1;x,2,3,4\n")
    with pytest.raises(DataError, match="not a ';'-separated list"):
        CustomPairs(tmp_path)[0]
