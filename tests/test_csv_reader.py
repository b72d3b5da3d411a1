"""One CSV reader: spreadsheet-style files (BOM, CRLF, quoted fields) are read alike by every command,
and a bad file is worded alike everywhere (file, row, column)."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import willow_image
from semcorr.csvtable import read_csv, read_points_csv
from semcorr.errors import DataError
from semcorr.io.records import PairRecord
from semcorr.io.stream import RecordWriter, iter_records
from semcorr_cli.main import app

A = willow_image("Cars_006a.png")
B = willow_image("Cars_007a.png")
BOM = "\ufeff"


def run(args, input=None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def spreadsheet(path, lines: list[str]) -> None:
    """``lines`` as a spreadsheet program saves them: UTF-8 with a byte-order mark, CRLF line ends."""
    path.write_bytes((BOM + "\r\n".join(lines) + "\r\n").encode("utf-8"))


def test_the_reader_on_a_spreadsheet_file(tmp_path):
    spreadsheet(tmp_path / "t.csv", ['source_image, "target image"', "", '"cat, 1.png", "my ""best"" dog.png"', " a.png ,b.png"])
    t = read_csv(tmp_path / "t.csv")
    assert t.header == ["source_image", "target image"]
    assert [list(r) for r in t.rows] == [["cat, 1.png", 'my "best" dog.png'], ["a.png", "b.png"]]
    assert [r.number for r in t.rows] == [3, 4]  # the blank row 2 still counts
    assert t.column(["TARGET IMAGE"]) == 1 and t.column(["x"]) is None
    with pytest.raises(DataError, match=r"^'.*t.csv' has no 'XA' column \(header: source_image, target image\)$"):
        t.require_column(["XA", "source_x"])
    row = t.rows[1]
    with pytest.raises(DataError, match=r"t.csv' row 4, column 3: missing \(the row has 2 fields\)$"):
        t.cell(row, 2)
    with pytest.raises(DataError, match=r"row 4, column 'source_image': 'a.png' is not a number$"):
        t.number(row, 0)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "pair list '{p}' is empty"),
        (b"\n \n,\n", "pair list '{p}' is empty"),
        ("source_image\ncaf\u00e9".encode("latin-1"), "pair list '{p}' is not UTF-8 text"),
        (b'a,b\n"unterminated\n', "'{p}' row 2 is not valid CSV"),
        (b'a,b\n"x"y,z\n', "'{p}' row 2 is not valid CSV"),
    ],
)
def test_unreadable_files_are_one_sentence(tmp_path, content, message):
    p = tmp_path / "p.csv"
    p.write_bytes(content)
    with pytest.raises(DataError, match="^" + message.format(p=p).replace("(", r"\(")):
        read_csv(p, "pair list")
    with pytest.raises(DataError, match="does not exist"):
        read_csv(tmp_path / "none.csv", "pair list")


@pytest.fixture()
def odd_images(tmp_path):
    """Copies of A and B under names with a comma and spaces."""
    shutil.copy(A, tmp_path / "cat, 1.png")
    shutil.copy(B, tmp_path / "cat 2.png")
    return tmp_path


def test_extract_reads_a_spreadsheet_pair_list(odd_images):
    spreadsheet(odd_images / "pairs.csv", ["source_image,target_image", '"cat, 1.png", "cat 2.png"'])
    r = run(["extract", "--pairs", odd_images / "pairs.csv", "--size", "64", "--layers", "features.6", "-o", odd_images / "f.h5"])
    assert r.exit_code == 0, r.output
    (rec,) = iter_records(odd_images / "f.h5")
    assert (rec.src_path, rec.trg_path) == ("cat, 1.png", "cat 2.png") and rec.src_size == (200, 300)


def test_warp_reads_a_spreadsheet_keypoint_file(tmp_path):
    h, w = 20, 30
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    shift = np.stack([xs + 2, ys + 1], -1)  # every pixel moves by (2, 1)
    rec = PairRecord("p", "a.png", "b.png", (h, w), (h, w), flow={"src_to_trg": shift, "trg_to_src": shift})
    with RecordWriter(tmp_path / "f.h5", "test") as wr:
        wr.write(rec)
    spreadsheet(tmp_path / "pts.csv", ['"x", "y"', '"4", 5', "# a comment", "10.5,3"])
    assert read_points_csv(tmp_path / "pts.csv").tolist() == [[4, 5], [10.5, 3]]
    r = run(["warp", tmp_path / "f.h5", "--keypoints", tmp_path / "pts.csv", "-o", tmp_path / "m.csv"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "m.csv").read_text().splitlines() == ["x,y", "6.000,6.000", "12.500,4.000"]
    spreadsheet(tmp_path / "bad.csv", ["x,y", "1,2", "3,abc"])
    r = run(["warp", tmp_path / "f.h5", "--keypoints", tmp_path / "bad.csv", "-o", tmp_path / "m2.csv"])
    assert r.exit_code == 1 and f"'{tmp_path / 'bad.csv'}' row 3, column 'y': 'abc' is not a number" in r.stderr
    assert not (tmp_path / "m2.csv").exists()


def test_evaluate_reads_the_same_spreadsheet_list_as_a_plain_one(odd_images):
    from semcorr.datasets.custom import CustomPairs

    rows = ["source_image,target_image,XA,YA,XB,YB,category", '"cat, 1.png", "cat 2.png", "10;20", "30;40", "12;22", "31;41", "a cat, really"']
    spreadsheet(odd_images / "sheet.csv", rows)
    (odd_images / "plain.csv").write_text("\n".join(rows) + "\n")
    sheet, plain = (CustomPairs(odd_images, pairs=n)[0] for n in ("sheet.csv", "plain.csv"))
    np.testing.assert_array_equal(sheet.src_kps, [[10, 30], [20, 40]])
    np.testing.assert_array_equal(sheet.trg_kps, plain.trg_kps)
    assert sheet.category == "a cat, really" and sheet.src_path == odd_images / "cat, 1.png"
    r = run(["evaluate", "-d", "custom", "--root", odd_images, "--pairs", "sheet.csv", "--model", "nn", "--size", "64", "--json", odd_images / "r.json", "-q"])
    assert r.exit_code == 0, r.output
    assert json.loads((odd_images / "r.json").read_text())["pairs_scored"] == 1


def test_the_dataset_lists_that_train_and_evaluate_read_accept_spreadsheet_files(tmp_path):
    from semcorr.training_data.sources import open_training_source
    from semcorr.datasets import open_dataset
    from test_data_sources import make_pf_pascal

    make_pf_pascal(tmp_path)  # train_pairs.csv as plain text
    plain = (tmp_path / "train_pairs.csv").read_text().splitlines()
    spreadsheet(tmp_path / "train_pairs.csv", [",".join(f'"{c}"' for c in line.split(",")) for line in plain])
    pairs = open_training_source(f"pf-pascal:{tmp_path}", "keypoints", (20, 30), seed=0)
    assert len(pairs) == 2
    ds = open_dataset("pf-pascal", tmp_path, split="train")
    assert ds[0].src_name == "PF-dataset-PASCAL/JPEGImages/2008_000001.jpg" and ds[0].category == "car"  # class 7
    # PF-WILLOW's list re-saved by a spreadsheet gives the same pairs
    from conftest import WILLOW

    lines = (WILLOW / "test_pairs_pf.csv").read_text().splitlines()[:3]
    spreadsheet(tmp_path / "willow.csv", lines)
    a = open_dataset("pf-willow", WILLOW, pairs=tmp_path / "willow.csv")
    b = open_dataset("pf-willow", WILLOW)
    assert len(a) == 2
    np.testing.assert_array_equal(a[1].src_kps, b[1].src_kps)


def test_a_short_row_is_worded_alike_by_extract_and_evaluate(tmp_path):
    Image.open(A).save(tmp_path / "a.png")
    path = tmp_path / "pairs.csv"
    spreadsheet(path, ["source_image,target_image,XA,YA,XB,YB", "a.png,a.png,1,2,3,4", "a.png"])
    expected = f"'{path}' row 3, column 'target_image': missing (the row has 1 field)"
    r1 = run(["extract", "--pairs", path, "--size", "64", "--layers", "features.6", "-o", tmp_path / "f.h5"])
    r2 = run(["evaluate", "-d", "custom", "--root", tmp_path, "--model", "nn", "--size", "64", "--json", tmp_path / "r.json"])
    for r in (r1, r2):  # the row is refused before any work, so both say so alike
        assert r.exit_code == 1 and r.stderr.strip() == f"semcorr: error: {expected}; nothing was computed (--skip-bad computes the 1 other pair)", r.output
    assert not (tmp_path / "f.h5").exists() and not (tmp_path / "r.json").exists()
