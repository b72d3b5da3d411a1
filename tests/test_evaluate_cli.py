"""`semcorr evaluate` end to end: outputs, merge, exit codes; the nn model on one PF-WILLOW pair."""

import csv
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import WILLOW
from semcorr.geometry import pixel_grid
from semcorr_cli.main import app

needs_willow = pytest.mark.skipif(not (WILLOW / "test_pairs_pf.csv").is_file(), reason="shared PF-WILLOW not present")
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, ["evaluate", *[str(a) for a in args]])


def make_custom(root: Path) -> None:
    """Two 40×30 images; pair 0 truly shifted by (3, 0), pair 1 by (3, 3.5) (errors 3.5 for a (3, 0) prediction)."""
    Image.new("RGB", (40, 30)).save(root / "s.png")
    Image.new("RGB", (40, 30)).save(root / "t.png")
    with open(root / "pairs.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["source_image", "target_image", "XA", "YA", "XB", "YB", "category"])
        w.writerow(["s.png", "t.png", "5;10", "5;10", "8;13", "5;10", "a"])
        w.writerow(["s.png", "t.png", "5;10", "5;10", "8;13", "8.5;13.5", "b"])


def write_shift_flows(path: Path, names: list[tuple[str, str, tuple[int, int], tuple[int, int]]], d=(3.0, 0.0)) -> None:
    with h5py.File(path, "w") as f:
        f.attrs["semcorr_format"] = 1
        pairs = f.create_group("pairs")
        for k, (src, trg, ss, ts) in enumerate(names):
            g = pairs.create_group(f"r{k}")
            g.attrs["src_path"], g.attrs["trg_path"] = src, trg
            g.attrs["src_size"], g.attrs["trg_size"] = np.array(ss), np.array(ts)
            g.create_dataset("flow/src_to_trg", data=pixel_grid(*ss).numpy() + np.float32(d))
            g.create_dataset("flow/trg_to_src", data=pixel_grid(*ts).numpy() - np.float32(d))


def test_custom_flows_json_csv_plot(tmp_path):
    make_custom(tmp_path)
    write_shift_flows(tmp_path / "f.h5", [("s.png", "t.png", (30, 40), (30, 40))])
    out = tmp_path / "out"
    r = invoke("--dataset", "custom", "--root", tmp_path, "--flows", tmp_path / "f.h5", "--json", out / "r.json", "--csv", out / "r.csv", "--plot", out / "c.png")
    assert r.exit_code == 0, r.output
    assert "pair*" in r.stdout and "@0.1" in r.stdout and "kp" in r.stdout and "cat. mean" in r.stdout
    rep = json.loads((out / "r.json").read_text())
    # L = 40: errors 0, 0 (pair a) and 3.5, 3.5 (pair b): 0.05 → 2 px, 0.1 → 4 px
    assert rep["summary"]["overall"]["pck_pair"] == pytest.approx({"0.05": 50.0, "0.1": 100.0, "0.15": 100.0})
    assert rep["protocol"]["name"] == "custom" and rep["source"]["flows"].endswith("f.h5")
    assert any(row[0] == "protocol" for row in csv.reader(open(out / "r.csv")))
    assert Image.open(out / "c.png").format == "PNG"
    # the protocol can be changed from the command line; the report says so
    r = invoke("--dataset", "custom", "--root", tmp_path, "--flows", tmp_path / "f.h5", "--alpha", "0.2", "--threshold", "kps", "--json", out / "k.json", "-q")
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "k.json").read_text())
    assert rep["protocol"]["name"] == "custom+" and rep["protocol"]["threshold"] == "kps" and rep["protocol"]["alphas"] == [0.2]
    # L = keypoint box of the target, 5 × 5 (pair a) and 5 × 5 (pair b): 0.2 · 5 = 1 px
    assert rep["summary"]["overall"]["pck_pair"] == {"0.2": 50.0}
    assert r.stdout == ""


def test_shards_then_merge_on_the_command_line(tmp_path):
    make_custom(tmp_path)
    write_shift_flows(tmp_path / "f.h5", [("s.png", "t.png", (30, 40), (30, 40))])
    for i in (1, 2):
        r = invoke("-d", "custom", "--root", tmp_path, "--flows", tmp_path / "f.h5", "--shard", f"{i}/2", "--results", tmp_path / f"s{i}.jsonl", "-q")
        assert r.exit_code == 0, r.output
    r = invoke("--merge", tmp_path / "s1.jsonl", tmp_path / "s2.jsonl", "--json", tmp_path / "m.json", "-q")
    assert r.exit_code == 0, r.output
    r = invoke("-d", "custom", "--root", tmp_path, "--flows", tmp_path / "f.h5", "--json", tmp_path / "full.json", "-q")
    merged, full = (json.loads((tmp_path / n).read_text()) for n in ("m.json", "full.json"))
    assert merged["summary"] == full["summary"] and merged["pairs_scored"] == 2
    # resuming a complete file does nothing and reports the same
    r = invoke("-d", "custom", "--root", tmp_path, "--flows", tmp_path / "f.h5", "--shard", "1/2", "--results", tmp_path / "s1.jsonl", "--resume")
    assert r.exit_code == 0 and "resumed: 1 pairs" in r.stderr


@pytest.mark.parametrize(
    "args,code,message",
    [
        (["--dataset", "pf-willow"], 2, "--root are required"),
        (["--dataset", "pf-willow", "--root", "/nonexistent/x"], 1, "does not exist"),
        (["--dataset", "nope", "--root", "."], 2, "unknown dataset"),
        (["--dataset", "custom", "--root", "{tmp}", "--protocol", "tss"], 2, "is for tss"),
        (["--dataset", "custom", "--root", "{tmp}", "--protocol", "nope"], 2, "unknown protocol"),
        (["--dataset", "custom", "--root", "{tmp}", "--shard", "0/2"], 2, "--shard"),
        (["--dataset", "custom", "--root", "{tmp}", "--resume"], 2, "--resume needs --results"),
        (["--dataset", "custom", "--root", "{tmp}", "--flows", "{tmp}/f.h5", "--model", "nn"], 2, "not both"),
        (["--dataset", "custom", "--root", "{tmp}", "--flows", "{tmp}/none.h5"], 1, "does not exist"),
        (["--dataset", "custom", "--root", "{tmp}", "--flows", "{tmp}/f.h5", "-O", "layout=small"], 2, "takes no option 'layout'"),
        (["--dataset", "custom", "--root", "{tmp}", "--flows", "{tmp}/f.h5", "-O", "layout"], 2, "KEY=VALUE"),
        (["--dataset", "custom", "--root", "{tmp}", "--device", "tpu"], 2, "--device"),
        (["--merge"], 2, "needs the results files"),
        (["--merge", "{tmp}/pairs.csv"], 1, "not JSON"),
        (["--dataset", "custom", "--root", "{tmp}", "--flows", "{tmp}/f.h5", "--alpha", "x"], 2, "comma-separated"),
    ],
)
def test_errors_are_one_sentence_with_the_right_exit_code(tmp_path, args, code, message):
    make_custom(tmp_path)
    write_shift_flows(tmp_path / "f.h5", [("s.png", "t.png", (30, 40), (30, 40))])
    r = invoke(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert r.exit_code == code, r.output
    assert message in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.count("semcorr: error:") == 1


@needs_willow
def test_pf_willow_precomputed_flows_by_list_names(tmp_path):
    names = []
    with open(WILLOW / "test_pairs_pf.csv") as fh:
        rows = list(csv.reader(fh))[1:4]
    for a, b, *_ in rows:
        sizes = []
        for n in (a, b):
            with Image.open(WILLOW / n) as im:
                sizes.append((im.height, im.width))
        names.append((a, b, sizes[0], sizes[1]))
    write_shift_flows(tmp_path / "w.h5", names, d=(0.0, 0.0))
    r = invoke("--dataset", "pf-willow", "--root", WILLOW, "--flows", tmp_path / "w.h5", "--limit", 3, "--json", tmp_path / "w.json")
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "w.json").read_text())
    assert rep["protocol"]["name"] == "pf-willow-kps" and rep["summary"]["overall"]["n_pairs"] == 3
    assert list(rep["summary"]["categories"]) == ["car(G)"] and rep["summary"]["overall"]["n_keypoints"] == 30
    assert "car(G)" in r.stdout


@needs_willow
def test_nn_model_end_to_end_on_one_pair(tmp_path):
    pytest.importorskip("semcorr.pipeline")
    r = invoke("--dataset", "pf-willow", "--root", WILLOW, "--model", "nn", "--size", 128, "--limit", 1, "--device", "cpu", "--json", tmp_path / "nn.json")
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "nn.json").read_text())
    assert rep["source"]["model"] == "nn" and rep["source"]["size"] == [128, 128]
    values = rep["summary"]["overall"]["pck_pair"]
    assert 0.0 <= values["0.05"] <= values["0.1"] <= values["0.15"] <= 100.0
