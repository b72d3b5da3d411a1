"""CUB-200-2011 reader and the cub-mmnet preset on a look-alike written under the published file names."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from semcorr.datasets import open_dataset
from semcorr.datasets.cub import draw_pairs
from semcorr.errors import DataError, UsageError
from semcorr_cli.main import app

# image id → (class folder, file, is_train, box x y w h, {part id: (x, y)} of the visible parts)
IMAGES = {
    1: ("001.Black_footed_Albatross", "Black_Footed_Albatross_0001_796111.jpg", 0, (2, 2, 30, 10), {1: (10, 10), 2: (20, 10), 3: (30, 20)}),
    2: ("001.Black_footed_Albatross", "Black_Footed_Albatross_0002_55.jpg", 0, (5, 5, 20, 10), {1: (12, 10), 2: (20, 18), 4: (5, 5)}),
    3: ("002.Laysan_Albatross", "Laysan_Albatross_0001_545.jpg", 0, (0, 0, 10, 10), {1: (10, 10)}),
    4: ("002.Laysan_Albatross", "Laysan_Albatross_0002_1027.jpg", 1, (1, 1, 8, 8), {1: (3, 3), 5: (4, 4)}),
    5: ("002.Laysan_Albatross", "Laysan_Albatross_0003_1033.jpg", 1, (1, 1, 9, 9), {1: (6, 3), 5: (4, 7)}),
}
PARTS = ["back", "beak", "belly", "breast", "crown", "forehead", "left eye", "left leg", "left wing", "nape",
         "right eye", "right leg", "right wing", "tail", "throat"]  # fmt: skip


def make_cub(root: Path) -> Path:
    """The published layout under root/CUB_200_2011 with 40×30 images; returns that folder."""
    base = root / "CUB_200_2011"
    (base / "parts").mkdir(parents=True)
    lines = {k: [] for k in ("images", "labels", "boxes", "split", "locs")}
    for i, (cls, name, train, box, parts) in IMAGES.items():
        (base / "images" / cls).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 30), (i * 40, 0, 0)).save(base / "images" / cls / name, format="JPEG")
        lines["images"].append(f"{i} {cls}/{name}")
        lines["labels"].append(f"{i} {int(cls[:3])}")
        lines["boxes"].append(f"{i} " + " ".join(f"{v:.1f}" for v in box))
        lines["split"].append(f"{i} {train}")
        for k in range(1, 16):
            x, y = parts.get(k, (0, 0))
            lines["locs"].append(f"{i} {k} {x:.1f} {y:.1f} {int(k in parts)}")
    for key, path in (("images", "images.txt"), ("labels", "image_class_labels.txt"), ("boxes", "bounding_boxes.txt"),
                      ("split", "train_test_split.txt"), ("locs", "parts/part_locs.txt")):  # fmt: skip
        (base / path).write_text("\n".join(lines[key]) + "\n")
    (base / "parts" / "parts.txt").write_text("".join(f"{k} {n}\n" for k, n in enumerate(PARTS, start=1)))
    (base / "classes.txt").write_text("1 001.Black_footed_Albatross\n2 002.Laysan_Albatross\n")
    return base


def test_reader_parts_boxes_and_invisible_parts(tmp_path):
    base = make_cub(tmp_path)
    (base / "pairs.txt").write_text("1 2\n2 1\n1 3\n")
    ds = open_dataset("cub", tmp_path, pairs="pairs.txt")  # the folder above CUB_200_2011 is accepted
    assert ds.root == base and len(ds) == 3 and ds.part_names[6] == "left eye"
    p = ds[0]
    assert p.src_name == "images/001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111.jpg"
    assert p.category == "001.Black_footed_Albatross" and p.src_size == (30, 40)
    np.testing.assert_array_equal(p.src_bbox, [2, 2, 32, 12])  # x y w h → x1 y1 x2 y2
    assert p.src_kps.shape == (15, 2)
    np.testing.assert_array_equal(p.src_kps[:3], [[10, 10], [20, 10], [30, 20]])
    assert np.isnan(p.src_kps[3:]).all()  # visible = 0: NaN, whatever x y say
    assert np.isfinite(p.trg_kps[3]).all() and np.isnan(p.trg_kps[2]).all()
    one = open_dataset("cub", base, pairs="pairs.txt", coords="one-based")[0]
    np.testing.assert_array_equal(one.src_kps[:3], p.src_kps[:3] - 1)


def test_drawn_pairs_are_seeded_distinct_and_of_the_split(tmp_path):
    base = make_cub(tmp_path)
    ds = open_dataset("cub", base)  # test split: images 1, 2, 3 → at most 6 ordered pairs
    assert len(ds) == 6 and len({e.row for e in ds.entries}) == 6
    assert all(a != b and {a, b} <= {1, 2, 3} for a, b in (e.row for e in ds.entries))
    assert [e.row for e in open_dataset("cub", base).entries] == [e.row for e in ds.entries]
    same = open_dataset("cub", base, pairing="class", n_pairs="5")
    assert sorted(e.row for e in same.entries) == [(1, 2), (2, 1)]  # image 3 is alone in its species
    train = open_dataset("cub", base, split="train", n_pairs=1, seed=3)
    assert len(train) == 1 and set(train.entries[0].row) == {4, 5}
    assert draw_pairs([1, 2, 3], {1: "a", 2: "a", 3: "b"}, 2, 0, "random") == draw_pairs([1, 2, 3], {1: "a", 2: "a", 3: "b"}, 2, 0, "random")


def test_published_pair_file_in_root_is_the_test_default(tmp_path):
    # random_pairs.txt / class_pairs.txt of the public CUB readers: '<src id> <trg id>' a line, first 10,000 kept
    base = make_cub(tmp_path)
    (base / "random_pairs.txt").write_text("2 1\n3 1\n1 99\n")  # line 3 lies past n_pairs=2: never read
    (base / "class_pairs.txt").write_text("1 2\n")
    ds = open_dataset("cub", base, n_pairs=2)
    assert [e.row for e in ds.entries] == [(2, 1), (3, 1)]
    assert ds.describe()["pairs"].endswith("random_pairs.txt") and ds.describe()["pairs_found_in_root"] is True
    assert ds[1].category == "002.Laysan_Albatross"  # the source's species
    assert [e.row for e in open_dataset("cub", base, pairing="class").entries] == [(1, 2)]
    with pytest.raises(DataError, match="line 3 names image 99"):
        open_dataset("cub", base)  # the default keeps 10,000 lines, so line 3 is read
    given = open_dataset("cub", base, pairs="class_pairs.txt")  # pairs=FILE wins, and is not 'found'
    assert [e.row for e in given.entries] == [(1, 2)] and "pairs_found_in_root" not in given.describe()
    train = open_dataset("cub", base, split="train", n_pairs=1)  # the file is a test list: training draws its own
    assert set(train.entries[0].row) == {4, 5} and "pairs" not in train.describe()
    (base / "random_pairs.txt").unlink()
    assert "pairs" not in open_dataset("cub", base).describe()  # no file: the seeded draw


def test_wrong_root_and_options(tmp_path):
    with pytest.raises(DataError, match="images.txt.*CUB-200-2011"):
        open_dataset("cub", tmp_path)
    base = make_cub(tmp_path)
    with pytest.raises(UsageError, match="splits train, test"):
        open_dataset("cub", base, split="val")
    with pytest.raises(UsageError, match="pairing"):
        open_dataset("cub", base, pairing="near")
    (base / "bad.txt").write_text("1 99\n")
    with pytest.raises(DataError, match="image 99"):
        open_dataset("cub", base, pairs="bad.txt")
    (base / "parts" / "part_locs.txt").unlink()
    with pytest.raises(DataError, match="part_locs"):
        open_dataset("cub", base)


def test_cub_mmnet_preset_identity_scores_by_hand(tmp_path):
    # Identity keeps every point (the images have one size). α_bbox of the target box, source → target:
    #   1→2: L = max(20, 10) = 20; parts 1, 2 visible in both, errors 2 and 8 (part 3 and 4 each seen once: ignored)
    #   2→1: L = 30; the same two errors
    #   1→3: L = 10; part 1 only, error 0
    # α = 0.05: thresholds 1, 1.5, 0.5 → correct 0, 0, 1;  α = 0.1: 2, 3, 1 → 1, 1, 1;  α = 0.15: 3, 4.5, 1.5 → 1, 1, 1
    base = make_cub(tmp_path)
    (base / "pairs.txt").write_text("1 2\n2 1\n1 3\n")
    out = tmp_path / "r.json"
    r = CliRunner().invoke(app, ["evaluate", "-d", "cub", "--root", str(base), "--pairs", "pairs.txt", "--model", "identity", "--json", str(out)])
    assert r.exit_code == 0, r.output
    rep = json.loads(out.read_text())
    assert rep["protocol"]["name"] == "cub-mmnet" and rep["protocol"]["threshold"] == "bbox"
    o = rep["summary"]["overall"]
    assert o["n_keypoints"] == 5 and o["n_pairs"] == 3
    assert o["pck_pair"] == pytest.approx({"0.05": 100 / 3, "0.1": 100 * 2 / 3, "0.15": 100 * 2 / 3})
    assert o["pck_keypoint"] == pytest.approx({"0.05": 20.0, "0.1": 60.0, "0.15": 60.0})
    assert rep["summary"]["headline"] == {"alpha": 0.1, "average": "pair", "value": pytest.approx(100 * 2 / 3)}
    assert "pair*" in r.stdout


def test_training_pairs_from_the_train_split(tmp_path):
    from semcorr.training_data.sources import open_training_source

    base = make_cub(tmp_path)
    src = open_training_source(f"cub:{base}", "keypoints", 32, seed=0)
    assert len(src) == 2 and "cub" in src.describe() and "train split" in src.describe()
    item = src[(0, 0)]
    assert item["src_image"].shape == (3, 32, 32) and item["src_kps"].shape == (15, 2)
    # parts 1 and 5 are seen in both training images, the rest nowhere: 2 finite rows, both sides alike
    assert int(np.isfinite(item["src_kps"].numpy()).all(axis=1).sum()) == 2
    assert float(item["trg_pck_ref"]) > 0  # the target box, scaled to 32 × 32
