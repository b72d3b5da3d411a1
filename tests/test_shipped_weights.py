"""Weights shipped inside the package: pinned hashes, default loading, tamper refusal."""

import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

import core.weights as W
from conftest import willow_image
from core.errors import WeightsError
from core.io.stream import iter_records
from core.models import build_model
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


def test_sfnet_default_weights_load_and_differ_from_a_fresh_head():
    shipped = build_model("sfnet", weights="default")
    fresh = build_model("sfnet", weights=None)
    diffs = [k for k, v in shipped.head_state_dict().items() if v.dtype.is_floating_point and not v.equal(fresh.head_state_dict()[k])]
    assert diffs, "the shipped head equals a freshly initialised one"


def test_flow_model_sfnet_works_without_weights(tmp_path):
    a, b = willow_image("Cars_006a.png"), willow_image("Cars_007a.png")
    r = CliRunner().invoke(app, ["extract", str(a), str(b), "--model", "sfnet", "--size", "160"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["flow", "--model", "sfnet", "-o", str(tmp_path / "f.h5")], input=r.stdout_bytes)
    assert r.exit_code == 0, r.output
    (rec,) = list(iter_records(tmp_path / "f.h5"))
    assert rec.flow["src_to_trg"].shape == (200, 300, 2)
    assert np.isfinite(rec.flow["src_to_trg"]).all()


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
