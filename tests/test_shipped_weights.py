"""Weights shipped inside the package: pinned hashes, default loading, tamper refusal."""

import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

import semcorr.weights as W
from conftest import willow_image
from semcorr.errors import WeightsError
from semcorr.io.stream import iter_records
from semcorr.models import build_model
from semcorr_cli.main import app


def test_every_shipped_file_matches_its_pinned_hash_and_sidecar():
    files = sorted(W.SHIPPED_DIR.glob("*.safetensors"))
    assert [f.name for f in files] == sorted(W.SHIPPED_SHA256)
    for f in files:
        assert W.sha256_file(f) == W.SHIPPED_SHA256[f.name]
        state, meta = W.load_checkpoint(f)
        assert meta["sha256"] == W.SHIPPED_SHA256[f.name]
        assert f.stat().st_size <= 10 * 2**20  # the size target
        assert "recipe" in meta and "metrics" in meta


SHIPPED_MODELS = sorted(name.split("_")[0] for name in W.SHIPPED_SHA256)


def test_every_model_ships_weights():
    assert SHIPPED_MODELS == ["dccnet", "mmnet", "ncnet", "sfnet"]


@pytest.mark.parametrize("model", SHIPPED_MODELS)
def test_default_weights_load_and_differ_from_a_fresh_head(model):
    shipped = build_model(model, weights="default")
    fresh = build_model(model, weights=None, **{k: v for k, v in shipped.config().items() if k not in ("model", "backbone", "backbone_weights")})
    assert shipped.config() == fresh.config()
    fresh_state = fresh.head_state_dict()
    diffs = [k for k, v in shipped.head_state_dict().items() if v.dtype.is_floating_point and not v.equal(fresh_state[k])]
    assert diffs, "the shipped head equals a freshly initialised one"
    assert shipped.weights_id.startswith("file:") and model in shipped.weights_id


def _extract(model: str) -> bytes:
    a, b = willow_image("Cars_006a.png"), willow_image("Cars_007a.png")
    r = CliRunner().invoke(app, ["extract", str(a), str(b), "--model", model, "--size", "160"])
    assert r.exit_code == 0, r.output
    return r.stdout_bytes


@pytest.mark.parametrize("model", SHIPPED_MODELS)
def test_flow_model_works_without_weights(tmp_path, model):
    r = CliRunner().invoke(app, ["flow", "--model", model, "-o", str(tmp_path / "f.h5")], input=_extract(model))
    assert r.exit_code == 0, r.output
    (rec,) = list(iter_records(tmp_path / "f.h5"))
    assert rec.flow["src_to_trg"].shape == (200, 300, 2)
    assert np.isfinite(rec.flow["src_to_trg"]).all()


@pytest.mark.parametrize("model", ["ncnet", "dccnet"])
def test_refine_works_without_weights(tmp_path, model):
    r = CliRunner().invoke(app, ["refine", "--model", model, "-o", str(tmp_path / "r.h5")], input=_extract(model))
    assert r.exit_code == 0, r.output
    (rec,) = list(iter_records(tmp_path / "r.h5"))
    assert rec.corr_attrs["method"] == model
    assert rec.corr_attrs["weights"].startswith(f"file:{model}_mobilenet_v2.safetensors:")
    assert rec.corr.shape == (10, 10, 10, 10)  # 160 px → the stride-16 grid


def test_a_tampered_shipped_file_is_refused(tmp_path, monkeypatch):
    name = "sfnet_mobilenet_v2.safetensors"
    shutil.copy(W.SHIPPED_DIR / name, tmp_path / name)
    shutil.copy(W.SHIPPED_DIR / name.replace(".safetensors", ".json"), tmp_path / name.replace(".safetensors", ".json"))
    data = bytearray((tmp_path / name).read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / name).write_bytes(bytes(data))
    monkeypatch.setattr(W, "SHIPPED_DIR", tmp_path.resolve())
    with pytest.raises(WeightsError, match="sha256"):
        W.load_checkpoint(tmp_path / name)
    (tmp_path / "other.safetensors").write_bytes(b"x")
    with pytest.raises(WeightsError, match="not one of the weights files shipped"):
        W.load_checkpoint(tmp_path / "other.safetensors")
