"""Training on a CPU out of the box: CPU-sized defaults, a warning for a loss that cannot learn, Ctrl-C that saves a resumable state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from semcorr.errors import render_params
from semcorr_cli.common import flag_for
import torch

from conftest import CALTECH, REPO
from semcorr.train import TrainingInterrupted, TrainOptions, Trainer, train
from semcorr.train.cpu import CPU_DEFAULTS, cpu_defaults
from semcorr.train.engine import degenerate_settings
from semcorr.train.feedback import read_log
from semcorr.train.hyper import resolve_hyper
from semcorr.train.state import load_resume_state
from semcorr.train.toy import ToyModel, build_toy
from test_train_engine import tiny_options as engine_tiny_options


def tiny_options(out: Path, **kw) -> TrainOptions:
    """The engine tests' tiny toy run, 6 steps long, with no checkpoint before the end."""
    return engine_tiny_options(out, **{"iterations": 6, "checkpoint_every": 100, **kw})


# ----------------------------------------------------------------------------- CPU-sized defaults


def test_cpu_defaults_fill_only_what_is_not_given():
    none = {"image_size": None, "batch_size": None, "iterations": None, "epochs": None}
    d = cpu_defaults("ncnet", none, {})
    assert d.hyper == {"image_size": 320, "batch_size": 8, "iterations": 400}
    assert d.model == {"ncons_kernel_sizes": [3, 3], "ncons_channels": [16, 1]}
    assert d.as_options() == (
        "--size 320 --batch-size 8 --iterations 400 --model-opt ncons_kernel_sizes=3,3 --model-opt ncons_channels=16,1"
    )
    # an explicit option wins; --epochs is a training length too
    d = cpu_defaults("ncnet", dict(none, batch_size=2, epochs=1), {"ncons_channels": [8, 1]})
    assert d.hyper == {"image_size": 320} and d.model == {"ncons_kernel_sizes": [3, 3]}
    # the shipped NC-Net recipe gives every size itself: nothing changes
    recipe = dict(none, image_size=320, batch_size=8, iterations=400)
    assert not cpu_defaults("ncnet", recipe, {"ncons_kernel_sizes": "3,3", "ncons_channels": "16,1"})
    # an --init-weights file fixes the architecture it stores (all of it for an authors' file)
    d = cpu_defaults("dccnet", recipe, {}, fixed_model={"ncons_kernel_sizes", "ncons_channels"})
    assert d.model == {"fusion_kernel_sizes": [3, 3], "fusion_channels": [16, 1]}
    assert not cpu_defaults("dccnet", recipe, {}, fixed_model=True)
    assert not cpu_defaults("toy", none, {})
    assert set(CPU_DEFAULTS) == {"sfnet", "ncnet", "dccnet", "mmnet"}
    assert cpu_defaults("mmnet", none, {}).as_options().endswith("--model-opt train_backbone=false")


def test_a_cpu_run_records_its_cpu_defaults_and_explicit_options_win(tmp_path, monkeypatch):
    monkeypatch.setitem(
        CPU_DEFAULTS, "toy", {"hyper": {"image_size": 24, "batch_size": 3, "iterations": 2}, "model": {"dropout": 0.0, "beta": 7.0}}
    )
    train(tiny_options(tmp_path / "a", image_size=None, batch_size=None, iterations=None, model_options={"beta": 5.0}))
    run = json.loads((tmp_path / "a" / "run.json").read_text())
    assert run["cpu_defaults"] == {"hyper": {"image_size": 24, "batch_size": 3, "iterations": 2}, "model_options": {"dropout": 0.0}}
    assert (run["hyper"]["image_size"], run["hyper"]["batch_size"], run["iterations"]) == ([24, 24], 3, 2)
    assert (run["config"]["dropout"], run["config"]["beta"]) == (0.0, 5.0)
    # every size given: the run is the one asked for, and run.json has no cpu_defaults
    train(tiny_options(tmp_path / "b", iterations=2, model_options={"dropout": 0.1, "beta": 5.0}))
    run = json.loads((tmp_path / "b" / "run.json").read_text())
    assert "cpu_defaults" not in run and run["hyper"]["batch_size"] == 2 and run["config"]["dropout"] == 0.1


def test_the_weak_loss_is_exactly_zero_with_one_pair_per_batch_and_the_engine_says_so():
    torch.manual_seed(0)
    model = build_toy(train_data="weak", dropout=0.0).train()
    batch = {"src_image": torch.rand(1, 3, 32, 32), "trg_image": torch.rand(1, 3, 32, 32)}
    loss, _ = model.loss(batch)
    assert loss.item() == 0.0  # the "negative" of the only pair is the pair itself
    two = {k: torch.rand(2, 3, 32, 32) for k in batch}
    assert model.loss(two)[0].item() != 0.0
    one = resolve_hyper(ToyModel.train_defaults, {"batch_size": 1})
    (warning,) = degenerate_settings(model, one)
    plain = render_params(warning)  # the library names the parameter; the CLI's reporter renders its flag
    assert "with batch_size 1 " in plain and "exactly 0" in plain and "batch_size 2 or more" in plain
    assert "--batch-size 1" in render_params(warning, flag_for) and "--batch-size 2" in render_params(warning, flag_for)
    assert degenerate_settings(model, resolve_hyper(ToyModel.train_defaults, {"batch_size": 2})) == []
    assert degenerate_settings(build_toy(train_data="synthetic"), one) == []


# ----------------------------------------------------------------------------- Ctrl-C


def final_sha(out: Path) -> str:
    return read_log(out / "log.jsonl")[-1]["weights_sha256"]


def test_ctrl_c_inside_a_long_step_saves_the_last_boundary_and_resume_is_exact(tmp_path, monkeypatch):
    """SIGINT while step 3 is stuck inside the model: the state of step 2 is saved at once, and --resume ends bit-identical."""
    reference = tmp_path / "reference"
    train(tiny_options(reference))

    gate = threading.Event()
    original = ToyModel.loss

    def stuck_at_third_call(self, batch):
        if self.training and int(self.loss_calls) == 2:  # the third training step
            os.kill(os.getpid(), signal.SIGINT)
            gate.wait(30)  # like a long torch op: the thread does not come back to Python
        return original(self, batch)

    monkeypatch.setattr(ToyModel, "loss", stuck_at_third_call)
    monkeypatch.setattr(Trainer, "interrupt_grace_s", 0.2)
    out = tmp_path / "interrupted"
    trainer = Trainer(tiny_options(out))
    t0 = time.monotonic()
    with pytest.raises(TrainingInterrupted, match="after step 2 .*with resume continues") as info:
        trainer.run()
    assert "the same command with --resume continues it" in info.value.render(flag_for)  # as the CLI prints it
    assert time.monotonic() - t0 < 30 and info.value.worker_alive and info.value.exit_code == 130
    assert load_resume_state(out / "resume.safetensors").progress.step == 2
    assert read_log(out / "log.jsonl")[-1]["event"] == "interrupted"
    gate.set()
    trainer.worker.join(30)  # the abandoned step ends without touching the run
    assert not trainer.worker.is_alive()
    assert load_resume_state(out / "resume.safetensors").progress.step == 2

    monkeypatch.setattr(ToyModel, "loss", original)
    result = train(tiny_options(out, resume=True))
    assert (result.step, result.resumed_from) == (6, 2)
    assert final_sha(out) == final_sha(reference)


def test_ctrl_c_on_the_command_line_exits_130_within_seconds_and_resume_finishes(tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "semcorr_cli.main", "train", "--model", "toy", "--data", f"folder:{CALTECH}", "--out", str(out),
        "--iterations", "100000", "--batch-size", "2", "--image-size", "32", "--limit-pairs", "8", "--log-every", "1",
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any(r["event"] == "step" for r in (read_log(out / "log.jsonl") if (out / "log.jsonl").is_file() else [])):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=60)[1]
    assert time.monotonic() - t0 < 5
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "the same command with --resume continues it" in err
    assert "step 1/100000" in err  # progress from the first step, also when stderr is not a terminal
    saved = load_resume_state(out / "resume.safetensors").progress.step
    assert saved >= 1 and read_log(out / "log.jsonl")[-1] == {**read_log(out / "log.jsonl")[-1], "event": "interrupted", "step": saved}
    more = [a if a != "100000" else str(saved + 2) for a in cmd]
    done = subprocess.run(more + ["--resume", "-q"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert read_log(out / "log.jsonl")[-1]["step"] == saved + 2
