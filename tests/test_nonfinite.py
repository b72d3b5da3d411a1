"""NaN and Inf are data errors: records holding them are refused when read, weights holding them at load."""

import csv
import io
import json

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import willow_image
from semcorr.errors import DataError, WeightsError
from semcorr.geometry import pixel_grid
from semcorr.io.stream import iter_records, record_to_bytes
from semcorr_cli.main import app

A = willow_image("Cars_006a.png")
B = willow_image("Cars_007a.png")


def run(args, input=None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """features.h5 (NC-Net's layers, 64 px), corr.h5 and flow.h5 of one PF-WILLOW pair."""
    d = tmp_path_factory.mktemp("clean")
    assert run(["extract", A, B, "--size", "64", "--model", "ncnet", "-o", d / "features.h5"]).exit_code == 0
    assert run(["correlate", d / "features.h5", "-o", d / "corr.h5"]).exit_code == 0
    assert run(["flow", d / "corr.h5", "-o", d / "flow.h5"]).exit_code == 0
    return d


def spoiled(clean, tmp_path, kind: str, dataset: str, value: float):
    """A copy of ``clean/<kind>.h5`` whose ``dataset`` has one value replaced by ``value``."""
    path = tmp_path / f"bad-{kind}.h5"
    path.write_bytes((clean / f"{kind}.h5").read_bytes())
    with h5py.File(path, "r+") as f:
        ds = f[f"pairs/000000/{dataset}"]
        arr = ds[()]
        arr.flat[7] = value
        ds[...] = arr
    return path


STAGES = [
    ("features", "features/src/features.13", ["correlate", "{in}", "-o", "{out}"]),
    ("features", "features/trg/features.6", ["flow", "{in}", "--model", "ncnet", "-o", "{out}"]),
    ("features", "features/src/features.10", ["refine", "{in}", "--model", "ncnet", "-o", "{out}"]),
    ("features", "features/trg/features.16", ["show", "{in}", "--model", "ncnet", "--point", "5,5", "-o", "{out}"]),
    ("corr", "corr", ["flow", "{in}", "-o", "{out}"]),
    ("flow", "flow/src_to_trg", ["warp", "{in}", "--keypoints", "{pts}", "-o", "{out}"]),
    ("flow", "flow/trg_to_src", ["warp", "{in}", "--image", A, "-o", "{out}"]),
    ("flow", "flow/src_to_trg", ["inspect", "{in}"]),
]


@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("kind, dataset, args", STAGES)
def test_every_stage_refuses_non_finite_records_in_one_sentence(clean, tmp_path, kind, dataset, args, value):
    bad = spoiled(clean, tmp_path, kind, dataset, value)
    (tmp_path / "pts.csv").write_text("x,y\n10,10\n")
    out = tmp_path / {"show": "out.png", "warp": "out.csv" if "--keypoints" in args else "out.png"}.get(args[0], "out.h5")
    r = run([str(a).replace("{in}", str(bad)).replace("{out}", str(out)).replace("{pts}", str(tmp_path / "pts.csv")) for a in args])
    assert r.exit_code == 1, r.output
    assert f"record '000000': dataset '{dataset}' holds 1 NaN or Inf value(s)" in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert not out.exists()


def test_streams_are_checked_as_files_are():
    from semcorr.io.records import PairRecord
    from semcorr.io.stream import write_frame

    corr = np.zeros((2, 3, 2, 3), dtype=np.float32)
    corr[1, 2, 0, 0] = -np.inf
    buf = io.BytesIO()
    write_frame(buf, record_to_bytes(PairRecord("p", "a.png", "b.png", (8, 8), (8, 8), corr=corr), ["test"]))
    with pytest.raises(DataError, match="record 'p': dataset 'corr' holds 1 NaN or Inf value"):
        list(iter_records("-", stdin=io.BytesIO(buf.getvalue())))
    corr[1, 2, 0, 0] = 0.5  # the same record with finite numbers reads back
    buf = io.BytesIO()
    write_frame(buf, record_to_bytes(PairRecord("p", "a.png", "b.png", (8, 8), (8, 8), corr=corr), ["test"]))
    (rec,) = iter_records("-", stdin=io.BytesIO(buf.getvalue()))
    assert rec.corr[1, 2, 0, 0] == 0.5


def test_evaluate_scores_nan_flows_as_misses_and_refuses_inf(tmp_path):
    Image.new("RGB", (40, 30)).save(tmp_path / "s.png")
    with open(tmp_path / "pairs.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["source_image", "target_image", "XA", "YA", "XB", "YB"])
        w.writerow(["s.png", "s.png", "5", "5", "5", "5"])
    for value, name in ((np.nan, "nan"), (np.inf, "inf")):
        flow = pixel_grid(30, 40).numpy()  # the identity: keypoint (5, 5) lands on (5, 5)
        flow[5, 5, 0] = value
        with h5py.File(tmp_path / f"{name}.h5", "w") as f:
            f.attrs["semcorr_format"] = 1
            g = f.create_group("pairs/r0")
            g.attrs["src_path"], g.attrs["trg_path"] = "s.png", "s.png"
            g.attrs["src_size"], g.attrs["trg_size"] = [30, 40], [30, 40]
            g["flow/src_to_trg"], g["flow/trg_to_src"] = flow, flow
        args = ["evaluate", "-d", "custom", "--root", tmp_path, "--flows", tmp_path / f"{name}.h5", "--json", tmp_path / f"{name}.json"]
        r = run(args)
        if name == "nan":  # docs/protocols.md: a NaN flow is no position, a miss
            assert r.exit_code == 0, r.output
            assert json.loads((tmp_path / "nan.json").read_text())["summary"]["overall"]["pck_pair"]["0.1"] == 0.0
        else:
            assert r.exit_code == 1 and "record 'r0': dataset 'flow/src_to_trg' holds 1 Inf value(s)" in r.stderr, r.output
            assert not (tmp_path / "inf.json").exists()
    # the other stages refuse NaN flows: warp has nothing to move a point with
    r = run(["warp", tmp_path / "nan.h5", "--image", tmp_path / "s.png", "-o", tmp_path / "w.png"])
    assert r.exit_code == 1 and "holds 1 NaN or Inf value(s)" in r.stderr and not (tmp_path / "w.png").exists()


def test_weights_holding_nan_are_refused_at_load_for_every_reader(tmp_path):
    from semcorr.models import build_model
    from semcorr.models.official import read_official_checkpoint
    from semcorr.weights import load_state_dict_file, save_checkpoint

    net = build_model("sfnet", backbone_weights="random", weights=None)
    state = net.head_state_dict()
    key = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    state[key] = state[key].clone()
    state[key].view(-1)[1] = float("inf")
    save_checkpoint(tmp_path / "bad.safetensors", state, {"config": net.config()})
    with pytest.raises(WeightsError, match=f"'{key}' holds 1 NaN or Inf value"):
        build_model("sfnet", backbone_weights="random", weights=tmp_path / "bad.safetensors")
    # the command line: exit 2, one sentence, no output
    r = run(["extract", A, B, "--size", "64", "--model", "sfnet", "-o", tmp_path / "f.h5"])
    r = run(["flow", tmp_path / "f.h5", "--model", "sfnet", "--weights", tmp_path / "bad.safetensors", "-o", tmp_path / "o.h5"])
    assert r.exit_code == 2 and "holds 1 NaN or Inf value" in r.stderr and not (tmp_path / "o.h5").exists()
    # torch.save files (backbones, released checkpoints) pass the same check, nested dicts included
    torch.save({"state_dict": {"w": torch.tensor([1.0, float("nan")])}, "epoch": 3}, tmp_path / "bad.pth.tar")
    with pytest.raises(WeightsError, match=r"'state_dict.w' holds 1 NaN"):
        load_state_dict_file(tmp_path / "bad.pth.tar", raw=True)
    with pytest.raises(WeightsError, match=r"'w' holds 1 NaN"):
        read_official_checkpoint(tmp_path / "bad.pth.tar")
    torch.save({"w": torch.tensor([1.0, 2.0]), "n": torch.tensor([3])}, tmp_path / "good.pth")
    assert set(load_state_dict_file(tmp_path / "good.pth")) == {"w", "n"}
