"""The training engine in-process: hyper-parameters, schedules, resumable state, run directory, refusals."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import CALTECH
from semcorr.errors import DataError, UsageError
from semcorr.train import TrainingDiverged, TrainOptions, resolve_hyper, train
from semcorr.train.feedback import JsonlLog, read_log
from semcorr.train.rundir import prepare_run_dir
from semcorr.train.schedule import lr_factor
from semcorr.train.state import Progress, capture_rng, load_resume_state, restore_rng, save_resume_state
from semcorr.train.toy import ToyModel, build_toy
from semcorr.weights import load_checkpoint


def tiny_options(out: Path, **kw) -> TrainOptions:
    base = dict(
        model="toy", data=f"folder:{CALTECH}", out=out, iterations=4, batch_size=2, image_size=32,
        checkpoint_every=2, log_every=1, limit_pairs=8, device="cpu", quiet=True, seed=1,
    )  # fmt: skip
    base.update(kw)
    return TrainOptions(**base)


# ----------------------------------------------------------------------------- hyper-parameters


def test_hyper_defaults_come_from_the_model_and_the_command_line_overrides():
    h = resolve_hyper(ToyModel.train_defaults, {})
    assert (h.optimizer, h.lr, h.batch_size, h.iterations, h.epochs, h.image_size) == ("adam", 1e-3, 4, 20, None, (48, 48))
    assert h.lr_schedule == {"type": "step", "step_size": 10, "gamma": 0.5, "unit": "iteration"}
    h = resolve_hyper(ToyModel.train_defaults, {"epochs": 3, "lr": 0.01, "optimizer": "SGD", "lr_milestones": [2], "image_size": 64})
    assert (h.epochs, h.iterations, h.lr, h.optimizer, h.image_size) == (3, None, 0.01, "sgd", (64, 64))
    assert h.lr_schedule == {"type": "step", "milestones": [2], "gamma": 0.5, "unit": "iteration"}
    assert resolve_hyper(ToyModel.train_defaults, {"lr_schedule": "none"}).lr_schedule is None
    with pytest.raises(UsageError, match="not both"):
        resolve_hyper(ToyModel.train_defaults, {"epochs": 1, "iterations": 5})
    with pytest.raises(UsageError, match="no default training length"):
        resolve_hyper({}, {})
    with pytest.raises(UsageError, match="adam, sgd"):
        resolve_hyper(ToyModel.train_defaults, {"optimizer": "lamb"})


def test_lr_schedules_are_functions_of_the_position():
    milestones = {"type": "step", "milestones": [2, 4], "gamma": 0.1, "unit": "epoch"}
    assert [lr_factor(milestones, step=0, epoch=e, total_steps=99) for e in range(6)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    periodic = {"type": "step", "step_size": 10, "gamma": 0.5, "unit": "iteration"}
    assert [lr_factor(periodic, s, 0, 99) for s in (0, 9, 10, 25)] == pytest.approx([1, 1, 0.5, 0.25])
    cosine = {"type": "cosine", "min_factor": 0.0}
    assert [lr_factor(cosine, s, 0, 10) for s in (0, 5, 10)] == pytest.approx([1, 0.5, 0])
    assert lr_factor(None, 1000, 50, 10) == 1.0


# ----------------------------------------------------------------------------- resumable state


@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_resume_state_round_trip_continues_identically(tmp_path, kind):
    torch.manual_seed(0)
    model = build_toy()
    make = (lambda ps: torch.optim.Adam(ps, lr=0.01)) if kind == "adam" else (lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.9))
    opt = make(model.parameters())
    x = torch.randn(2, 3, 32, 32)

    def step(m, o):
        o.zero_grad()
        m.head(m.backbone(x, ["conv2"]), m.backbone(x.flip(-1), ["conv2"])).src_to_trg.square().sum().backward()
        o.step()

    for _ in range(2):
        step(model, opt)
    save_resume_state(tmp_path / "s.safetensors", model.head_state_dict(), opt, Progress(step=2, epoch=1, step_in_epoch=0), {"k": 1})
    raw = (tmp_path / "s.safetensors").read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    assert json.loads(raw[8 : 8 + header_len])["__metadata__"]["semcorr_state"]  # a plain safetensors file
    after = torch.rand(3), np.random.rand(2), random.random()

    state = load_resume_state(tmp_path / "s.safetensors")
    assert (state.progress.step, state.progress.epoch, state.run) == (2, 1, {"k": 1})
    restore_rng(state.rng_tensors, state.rng_meta)
    again = torch.rand(3), np.random.rand(2), random.random()
    assert torch.equal(after[0], again[0]) and np.array_equal(after[1], again[1]) and after[2] == again[2]

    torch.manual_seed(1)
    clone = build_toy()
    clone.load_state_dict(state.weights, strict=False)
    opt2 = make(clone.parameters())
    opt2.load_state_dict(state.optimizer)
    model.eval(), clone.eval()  # no dropout: the continuation must match exactly
    step(model, opt)
    step(clone, opt2)
    for (k, a), b in zip(model.state_dict().items(), clone.state_dict().values()):
        assert torch.equal(a, b), k


def test_rng_capture_restore_covers_torch_numpy_and_random():
    tensors, meta = capture_rng()
    first = torch.randn(4), np.random.randn(3), random.random()
    restore_rng(tensors, meta)
    assert torch.equal(first[0], torch.randn(4)) and np.array_equal(first[1], np.random.randn(3)) and first[2] == random.random()


def test_log_truncation_drops_records_past_the_resumed_step(tmp_path):
    log = JsonlLog(tmp_path / "log.jsonl")
    for s in range(6):
        log.write("step", s, loss=float(s))
    log.close()
    with open(tmp_path / "log.jsonl", "a") as f:
        f.write('{"event": "step", "st')  # torn line of a killed process
    JsonlLog.truncate_after(tmp_path / "log.jsonl", 3)
    assert [r["step"] for r in read_log(tmp_path / "log.jsonl")] == [0, 1, 2, 3]


# ----------------------------------------------------------------------------- run directory


def test_run_directory_refusals(tmp_path):
    out = tmp_path / "run"
    record = {"format": "semcorr-train-run", "model": "toy", "data": "folder:x", "seed": 0, "iterations": 5}
    assert prepare_run_dir(out, record, resume=False, overwrite=False) is False
    (out / "resume.safetensors").write_bytes(b"state")
    with pytest.raises(UsageError, match="already holds a run of toy"):
        prepare_run_dir(out, record, resume=False, overwrite=False)
    with pytest.raises(UsageError, match=r"holds a different run \(seed differ\)"):
        prepare_run_dir(out, dict(record, seed=1), resume=True, overwrite=False)
    with pytest.raises(UsageError, match="contradict"):
        prepare_run_dir(out, record, resume=True, overwrite=True)
    (out / ".resume.safetensors8f2k.tmp").write_bytes(b"torn")  # left by a killed atomic write
    assert prepare_run_dir(out, dict(record, iterations=9), resume=True, overwrite=False) is True  # longer run: allowed
    assert not (out / ".resume.safetensors8f2k.tmp").exists() and (out / "resume.safetensors").exists()
    (out / "notes.txt").write_text("mine")
    assert prepare_run_dir(out, dict(record, seed=2), resume=False, overwrite=True) is False
    assert not (out / "resume.safetensors").exists() and (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "run.json").read_text())["seed"] == 2
    assert prepare_run_dir(tmp_path / "fresh", record, resume=False, overwrite=True) is False  # nothing to overwrite
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.csv").write_text("x")
    with pytest.raises(UsageError, match="is not empty"):
        prepare_run_dir(other, record, resume=False, overwrite=False)


def test_cli_refuses_an_occupied_run_directory(tmp_path):
    from semcorr_cli.main import app

    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"format": "semcorr-train-run", "model": "sfnet", "data": "folder:elsewhere"}))
    args = ["train", "--model", "toy", "--data", f"folder:{CALTECH}", "--out", str(out), "--iterations", "2",
            "--image-size", "32", "--limit-pairs", "4", "--batch-size", "2", "--device", "cpu", "-q"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "already holds a run of sfnet" in result.output
    assert not (out / "log.jsonl").exists()


def test_tensorboard_is_optional(tmp_path):
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        with pytest.raises(UsageError, match=r"needs the 'tensorboard' package \(pip install tensorboard\)"):
            train(tiny_options(tmp_path / "run", tensorboard=True))
        assert not (tmp_path / "run").exists()
    else:
        train(tiny_options(tmp_path / "run", tensorboard=True, iterations=1))
        assert any((tmp_path / "run" / "tensorboard").iterdir())


def test_unknown_model_names_the_trainable_ones(tmp_path):
    with pytest.raises(UsageError, match=r"unknown model 'nope'; choose one of .*toy"):
        train(tiny_options(tmp_path / "run", model="nope"))


def test_empty_data_is_refused_before_anything_is_written(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="yields no images"):
        train(tiny_options(tmp_path / "run", data=f"folder:{tmp_path / 'empty'}"))
    assert not (tmp_path / "run").exists()
    with pytest.raises(DataError, match="fewer than one batch"):
        train(tiny_options(tmp_path / "run", limit_pairs=3, batch_size=4))


# ----------------------------------------------------------------------------- whole runs


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"the loss became nan at step 5 .* last good checkpoint .*last\.safetensors \(step 4\) was kept"):
        train(tiny_options(out, iterations=8, model_options={"nan_after": 5}))
    weights, meta = load_checkpoint(out / "last.safetensors")  # verifies the sidecar's sha256 too
    assert meta["step"] == 4 and meta["model"] == "toy" and meta["config"]["model"] == "toy"
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())
    assert load_resume_state(out / "resume.safetensors").progress.step == 4
    log = read_log(out / "log.jsonl")
    assert log[-1]["event"] == "diverged" and log[-1]["last_checkpoint_step"] == 4
    assert [r["step"] for r in log if r["event"] == "step"] == [1, 2, 3, 4]


def test_validation_early_stopping_keeps_the_best_weights(tmp_path):
    out = tmp_path / "run"
    opts = dict(iterations=12, lr=1e-12, val=f"folder:{CALTECH}", val_every=1, patience=2, val_metric="pck", limit_pairs=4)
    result = train(tiny_options(out, **opts))
    # an (almost) frozen model never improves on its first validation: stop after `patience` more
    assert (result.finished, result.step, result.best_step) == ("early-stop", 3, 1)
    assert 0.0 <= result.best_metric <= 1.0
    best = json.loads((out / "best.json").read_text())
    assert best["step"] == 1 and best["kind"] == "best" and best["metrics"]["val"]["pck"] == result.best_metric
    vals = [r for r in read_log(out / "log.jsonl") if r["event"] == "val"]
    assert [v["improved"] for v in vals] == [True, False, False]
    assert load_resume_state(out / "resume.safetensors").progress.finished == "early-stop"
    again = train(tiny_options(out, resume=True, **opts))
    assert (again.finished, again.step) == ("early-stop", 3)  # resuming a finished run does nothing


def test_weak_model_trains_on_same_class_pairs_and_validates_on_loss(tmp_path):
    out = tmp_path / "run"
    result = train(tiny_options(out, iterations=2, model_options={"train_data": "weak"}, val=f"folder:{CALTECH}"))
    assert result.finished == "completed" and result.step == 2
    start = read_log(out / "log.jsonl")[0]
    assert start["event"] == "start" and "same-class image pairs" in start["data"]
    assert set(result.last_val) == {"loss", "pairs"} and result.last_val["pairs"] == 8
    meta = json.loads((out / "last.json").read_text())
    assert meta["config"]["train_data"] == "weak" and meta["data"] == f"folder:{CALTECH}"
    assert set(meta["versions"]) >= {"torch", "semcorr", "numpy"}
