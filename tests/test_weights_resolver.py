"""The one weights registry and resolver (semcorr.models.pretrained): every spec kind, verify, convert-weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import semcorr.models.pretrained as P
import semcorr.weights as W
from semcorr.errors import WeightsError
from semcorr.models import build_model
from semcorr.models.ncnet import NCNet
from semcorr.models.sfnet import SFNet
from semcorr_cli.main import app
from test_sfnet_released import adaptation_state


@pytest.fixture(scope="module")
def sfnet_released(tmp_path_factory) -> Path:
    """A small look-alike of SFNet's released best_checkpoint.pt (stride-0 tensors: cheap on disk)."""
    path = tmp_path_factory.mktemp("released") / "best_checkpoint.pt"
    torch.save({"state_dict1": adaptation_state(1024, 5, 0), "state_dict2": adaptation_state(2048, 3, 1)}, path)
    return path


# ----------------------------------------------------------------------------- registry


def test_every_shipped_file_is_one_registry_entry_with_its_pin_sidecar_and_layers():
    files = sorted(f.name for f in W.SHIPPED_DIR.glob("*.safetensors"))
    assert sorted(e.file for e in P.SHIPPED_WEIGHTS) == files == sorted(W.SHIPPED_SHA256)
    for entry in P.SHIPPED_WEIGHTS:
        side = json.loads(entry.path.with_suffix(".json").read_text())
        assert entry.sha256 == W.SHIPPED_SHA256[entry.file] == side["sha256"]
        assert entry.verify() == entry.path
        assert entry.config == side["config"] and entry.config["model"] == entry.model
        assert entry.recipe == side["recipe"] and entry.metrics == side["metrics"] and entry.metrics
        model = build_model(entry.model, backbone=entry.backbone, weights=P.DEFAULT_SPEC)
        assert tuple(model.required_layers) == entry.layers, entry.file
        assert model.weights_id == W.weights_file_id(entry.path)
    assert P.find_shipped("sfnet", "resnet50") is None
    with pytest.raises(WeightsError, match="no ncnet weights are shipped for backbone resnet50; pass weights FILE"):
        P.shipped_weights("ncnet", "resnet50")


def test_a_tampered_shipped_file_is_refused_by_verify_and_by_resolve(tmp_path, monkeypatch):
    entry = P.find_shipped("sfnet", "mobilenet_v2")
    for suffix in (".safetensors", ".json"):
        shutil.copy(entry.path.with_suffix(suffix), tmp_path / entry.path.with_suffix(suffix).name)
    monkeypatch.setattr(W, "SHIPPED_DIR", tmp_path.resolve())
    assert entry.verify() == tmp_path.resolve() / entry.file  # an intact copy passes
    data = bytearray(entry.path.read_bytes())
    data[-1] ^= 0xFF
    entry.path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256 .* expected " + entry.sha256[:12]):
        entry.verify()
    with pytest.raises(WeightsError, match="corrupt or not the published file"):
        P.resolve("default", SFNet)
    entry.path.unlink()
    with pytest.raises(WeightsError, match="is missing; reinstall semcorr"):
        entry.verify()


# ----------------------------------------------------------------------------- every spec kind


@pytest.mark.parametrize("spec", [None, "none", "None", "random"])
def test_fresh_specs_resolve_to_no_weights(spec):
    r = P.resolve(spec, SFNet)
    assert (r.kind, r.config, r.state, r.weights_id, r.path) == ("fresh", {}, None, "fresh", None)


def test_default_resolves_to_the_verified_shipped_file():
    r = P.resolve("default", NCNet)
    entry = P.find_shipped("ncnet", "mobilenet_v2")
    assert r.kind == "shipped" and r.path == entry.path
    assert r.config == entry.config and r.weights_id == f"file:ncnet_mobilenet_v2.safetensors:{entry.sha256[:12]}"
    state, _ = W.load_checkpoint(entry.path)
    assert set(r.state) == set(state) and all(torch.equal(r.state[k], state[k]) for k in state)


def test_a_semcorr_checkpoint_resolves_with_its_sidecar_config(tmp_path):
    state = {"refine.x": torch.arange(6.0).view(2, 3)}
    path = tmp_path / "mine.safetensors"
    W.save_checkpoint(path, state, {"config": {"model": "ncnet", "backbone": "mobilenet_v2", "center": True}})
    r = P.resolve(str(path), NCNet, "mobilenet_v2")
    assert r.kind == "checkpoint" and r.config == {"model": "ncnet", "backbone": "mobilenet_v2", "center": True}
    assert torch.equal(r.state["refine.x"], state["refine.x"]) and not r.carries_backbone
    assert r.weights_id == f"file:mine.safetensors:{W.sha256_file(path)[:12]}"
    with pytest.raises(WeightsError, match="was trained on backbone mobilenet_v2; use backbone mobilenet_v2"):
        P.resolve(path, NCNet, "resnet101")
    with pytest.raises(WeightsError, match="holds ncnet weights, not sfnet"):
        P.resolve(path, SFNet)
    # a Path is always a file, even one named like a spec
    with pytest.raises(WeightsError, match="weights file 'default' does not exist"):
        P.resolve(Path("default"), NCNet)


def test_the_authors_file_goes_through_the_models_adapter(sfnet_released):
    r = P.resolve(sfnet_released, SFNet)
    assert r.kind == "released" and r.config["backbone"] == "resnet101"
    assert r.weights_id == f"released-file:best_checkpoint.pt:{W.sha256_file(sfnet_released)[:12]}"
    raw = torch.load(sfnet_released, weights_only=True)
    assert torch.equal(r.state["adap_layer_feat4.conv2.1.running_var"], raw["state_dict2"]["conv2.1.running_var"])
    assert len(r.state) == len(raw["state_dict1"]) + len(raw["state_dict2"])
    with pytest.raises(WeightsError, match="trained on resnet101 features, not mobilenet_v2; use backbone resnet101"):
        P.resolve(sfnet_released, SFNet, "mobilenet_v2")
    # a model without a released layout refuses files that are not semcorr checkpoints
    from semcorr.train.toy import ToyModel

    with pytest.raises(WeightsError, match="toy reads no authors' released file"):
        P.resolve(sfnet_released, ToyModel)


def test_weights_ids_use_one_released_prefix_and_old_records_still_read():
    assert P.weights_file_name("released-file:a.pth:0123456789ab") == "a.pth"
    assert P.weights_file_name("official-file:b.pth.tar:0123456789ab") == "b.pth.tar"  # written before the one prefix
    assert P.weights_file_name("file:c.safetensors:0123456789ab") == "c.safetensors"
    assert P.weights_file_name("fresh") is None and P.weights_file_name("torchvision:X.Y") is None


# ----------------------------------------------------------------------------- convert-weights


def test_convert_weights_goes_through_the_resolver(sfnet_released, tmp_path, monkeypatch):
    calls = []
    real = P.resolve

    def spy(spec, model, backbone=None):
        calls.append((Path(spec).name, model.name, backbone))
        return real(spec, model, backbone)

    monkeypatch.setattr(P, "resolve", spy)
    out = tmp_path / "sfnet_r101.safetensors"
    r = CliRunner().invoke(app, ["convert-weights", "--model", "sfnet", str(sfnet_released), str(out), "-q"])
    assert r.exit_code == 0, r.output
    assert calls == [("best_checkpoint.pt", "sfnet", "resnet101")]
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["config"] == {"model": "sfnet", "backbone": "resnet101", "backbone_weights": "default",
                              "beta": 50.0, "kernel_sigma": 5.0}
    assert meta["converted_from"] == "best_checkpoint.pt" and meta["source_sha256"] == W.sha256_file(sfnet_released)
    # the converted file is the adapter's state, key for key, and resolves as a semcorr checkpoint
    again = real(out, SFNet)
    raw = torch.load(sfnet_released, weights_only=True)
    assert again.kind == "checkpoint" and again.config == meta["config"]
    assert len(again.state) == len(raw["state_dict1"]) + len(raw["state_dict2"])
    assert torch.equal(again.state["adap_layer_feat3.conv1.0.bias"], raw["state_dict1"]["conv1.0.bias"])
