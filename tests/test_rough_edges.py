"""What a new user hits first: --version, '-' for records, merges that name missing shards, plain CSV, umask, sidecars."""

from __future__ import annotations

import csv
import io
import json
import os
import stat

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import semcorr.files
from semcorr.errors import WeightsError
from semcorr.evaluate.export import plain_cell, run_label
from semcorr.geometry import pixel_grid
from semcorr.io.records import PairRecord
from semcorr.io.stream import RecordWriter
from semcorr_cli.main import app

runner = CliRunner()


def invoke(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input)


def test_version():
    r = invoke("--version")
    assert r.exit_code == 0 and r.stdout.strip() == f"semcorr {__import__('semcorr').__version__}"


def custom_dataset(root):
    """Two 40x30 images, two pairs whose target keypoints are the source ones shifted by (3, 0) and (3, 3.5)."""
    Image.new("RGB", (40, 30)).save(root / "s.png")
    Image.new("RGB", (40, 30)).save(root / "t.png")
    (root / "pairs.csv").write_text(
        "source_image,target_image,XA,YA,XB,YB,category\ns.png,t.png,5;10,5;10,8;13,5;10,a\ns.png,t.png,5;10,5;10,8;13,8.5;13.5,b\n"
    )


def shift_stream() -> bytes:
    """A records stream with flows shifting by (3, 0), for the pair s.png → t.png."""
    rec = PairRecord("r0", "s.png", "t.png", (30, 40), (30, 40))
    rec.flow["src_to_trg"] = pixel_grid(30, 40).numpy() + np.float32([3, 0])
    rec.flow["trg_to_src"] = pixel_grid(30, 40).numpy() - np.float32([3, 0])
    buf = io.BytesIO()
    with RecordWriter("-", "test", stdout=buf) as w:
        w.write(rec)
    return buf.getvalue()


def test_evaluate_reads_flows_from_standard_input(tmp_path):
    custom_dataset(tmp_path)
    r = invoke("evaluate", "-d", "custom", "--root", tmp_path, "--flows", "-", "-o", tmp_path / "r.json", "-q", input=shift_stream())
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "r.json").read_text())
    # errors 0, 0 (pair a) and 3.5, 3.5 (pair b), L = 40: PCK@0.05 (2 px) 50 %, PCK@0.1 (4 px) 100 %
    assert rep["summary"]["overall"]["pck_pair"]["0.05"] == 50.0 and rep["summary"]["overall"]["pck_pair"]["0.1"] == 100.0
    assert rep["source"]["flows"] == "-"


def test_a_merge_names_missing_shards_and_a_partial_score_is_marked(tmp_path):
    custom_dataset(tmp_path)
    (tmp_path / "f.stream").write_bytes(shift_stream())
    for i in (1, 2):
        r = invoke("evaluate", "-d", "custom", "--root", tmp_path, "--flows", tmp_path / "f.stream", "--shard", f"{i}/3",
                   "--results", tmp_path / f"s{i}.jsonl", "-q")  # fmt: skip
        assert r.exit_code == 0, r.output
    r = invoke("evaluate", "--merge", tmp_path / "s1.jsonl", "-o", tmp_path / "m.json", "-q")
    assert r.exit_code == 1 and "shards 2/3, 3/3 missing" in r.output and "--partial" in r.output
    assert not (tmp_path / "m.json").exists()
    r = invoke("evaluate", "--merge", tmp_path / "s1.jsonl", "--partial", "-o", tmp_path / "m.json", "--csv", tmp_path / "m.csv")  # --csv: the old spelling of -o F.csv
    assert r.exit_code == 0, r.output
    assert "partial score over 1 pairs (shards 2/3, 3/3 missing)" in r.stderr and "merged 1 files (partial)" in r.stdout
    rep = json.loads((tmp_path / "m.json").read_text())
    assert rep["coverage"] == {"complete": False, "missing_shards": ["2/3", "3/3"], "incomplete": []}
    # shard 3/3 of two pairs is empty, but it must still be given; all three make a whole run
    r = invoke("evaluate", "-d", "custom", "--root", tmp_path, "--flows", tmp_path / "f.stream", "--shard", "3/3",
               "--results", tmp_path / "s3.jsonl", "-q")  # fmt: skip
    r = invoke("evaluate", "--merge", *(tmp_path / f"s{i}.jsonl" for i in (1, 2, 3)), "-o", tmp_path / "all.json", "-q")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "all.json").read_text())["coverage"]["complete"] is True
    # CSV cells are plain: no JSON quoting of text, lists joined by ';'
    rows = list(csv.reader(open(tmp_path / "m.csv")))
    cells = {(row[0], row[1]): row[4] for row in rows}
    assert cells[("protocol", "name")] == "custom" and cells[("protocol", "alphas")] == "0.05;0.1;0.15"
    assert cells[("run", "coverage.missing_shards")] == "2/3;3/3" and cells[("run", "coverage.complete")] == "false"
    assert not any(c.startswith('"') for row in rows for c in row)


def test_plain_cells_and_run_labels():
    assert [plain_cell(v) for v in ("a b", True, None, [1, 2.5], 3)] == ["a b", "true", "", "1;2.5", "3"]
    head = {"source": {"model": "ncnet", "weights": "file:last.safetensors:0123456789ab"}, "selection": {"shard": [2, 4], "limit": None}}
    assert run_label(head) == "ncnet (last.safetensors), shard 2/4"
    assert run_label({"source": {"flows": "/x/f.h5"}, "selection": {"limit": 5}}) == "flows f.h5, first 5 pairs"


def test_outputs_get_the_users_umask(tmp_path, monkeypatch):
    from semcorr.weights import atomic_write_bytes, save_checkpoint

    previous = os.umask(0o022)
    semcorr.files._umask.cache_clear()
    try:
        atomic_write_bytes(tmp_path / "a.png", b"x")
        save_checkpoint(tmp_path / "w.safetensors", {"x": torch.zeros(2)}, {"model": "toy"})
        rec = PairRecord("p", "a", "b", (4, 4), (4, 4))
        with RecordWriter(tmp_path / "r.h5", "test") as w:
            w.write(rec)
        for name in ("a.png", "w.safetensors", "w.json", "r.h5"):
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name
    finally:
        os.umask(previous)
        semcorr.files._umask.cache_clear()


def test_a_checkpoint_without_its_sidecar_says_so(tmp_path):
    from safetensors.torch import save_file

    from semcorr.models import build_model

    save_file({"refine.conv.4.weight": torch.zeros(1)}, str(tmp_path / "ncnet.safetensors"))
    with pytest.raises(WeightsError, match=r"has no sidecar 'ncnet.json' beside it .*copy it along"):
        build_model("ncnet", weights=str(tmp_path / "ncnet.safetensors"))


@pytest.mark.parametrize(
    "args",
    [
        ["extract", "a.png", "b.png", "--size", "0"],
        ["evaluate", "-d", "custom", "--root", ".", "--size", "0"],
        ["show", "a.png", "b.png", "--model", "ncnet", "--point", "1,1", "-o", "x.png", "--size", "0"],
        ["train", "--model", "toy", "--data", "folder:.", "-o", "run", "--size", "0"],
    ],
)
def test_size_is_checked_the_same_way_everywhere(args):
    r = invoke(*args)
    assert r.exit_code == 2 and "--size must be between 16 and 4096 pixels, not 0" in r.output, r.output


def test_old_spellings_still_work_hidden_and_clash_with_the_new(tmp_path):
    from semcorr.io.stream import iter_records

    rec = PairRecord("p", "a.png", "b.png", (32, 32), (32, 32))
    rec.features["src"]["x"] = np.random.rand(8, 4, 4).astype(np.float32)
    rec.features["trg"]["x"] = np.random.rand(8, 4, 4).astype(np.float32)
    rec.feature_attrs["x"] = {"backbone": "mobilenet_v2", "stride": 8}
    with RecordWriter(tmp_path / "f.h5", "test") as w:
        w.write(rec)
    for flag in ("--keep-inputs", "--keep-features"):
        r = invoke("correlate", tmp_path / "f.h5", flag, "-o", tmp_path / f"c{flag}.h5")
        assert r.exit_code == 0, r.output
        (out,) = iter_records(tmp_path / f"c{flag}.h5")
        assert out.corr is not None and "x" in out.features["src"]
    r = invoke("correlate", tmp_path / "f.h5", "--keep-inputs", "--keep-features", "-o", tmp_path / "c.h5")
    assert r.exit_code == 2 and "--keep-features is the old spelling of --keep-inputs" in r.output
    for flag in ("--keep-inputs", "--keep"):
        r = invoke("flow", tmp_path / "c--keep-inputs.h5", flag, "--mutual-nn", "-o", tmp_path / "fl.h5")
        assert r.exit_code == 0, r.output
    helps = {cmd: invoke(cmd, "--help").output for cmd in ("correlate", "flow", "train", "evaluate")}
    assert "--keep-inputs" in helps["correlate"] and "--keep-features" not in helps["correlate"]
    assert "--mutual-nn" in helps["flow"] and "--keep " not in helps["flow"]
    assert "--output" in helps["train"] and "--image-size" not in helps["train"] and "--out " not in helps["train"]
    assert "--output" in helps["evaluate"] and "--plot" not in helps["evaluate"]
    r = invoke("train", "--model", "toy", "--data", "folder:.", "-o", tmp_path / "a", "--out", tmp_path / "b")
    assert r.exit_code == 2 and "--out is the old spelling of --output" in r.output
    r = invoke("train", "--model", "toy", "--data", "folder:.")
    assert r.exit_code == 2 and "-o/--output RUN_DIR" in r.output
