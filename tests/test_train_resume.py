"""A run killed with SIGKILL after its first checkpoint and resumed ends with the same weights, bit for bit (CPU)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from conftest import CALTECH, REPO
from semcorr.train.feedback import read_log
from semcorr.train.state import load_resume_state
from semcorr.weights import load_checkpoint

ITERATIONS = 16


def command(out: Path, *extra: str) -> list[str]:
    # 10 images, batch 2: 5 steps per epoch, so the run crosses epochs and checkpoints (every 4) fall mid-epoch
    return [
        sys.executable, "-m", "semcorr_cli.main", "train", "--model", "toy", "--data", f"folder:{CALTECH}",
        "--out", str(out), "--iterations", str(ITERATIONS), "--batch-size", "2", "--image-size", "32",
        "--checkpoint-every", "4", "--log-every", "1", "--limit-pairs", "10", "--seed", "3", "--device", "cpu", "-q", *extra,
    ]  # fmt: skip


def env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    ref, killed = tmp_path / "uninterrupted", tmp_path / "killed"
    victim = subprocess.Popen(command(killed), cwd=REPO, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not (killed / "resume.safetensors").exists():
        assert victim.poll() is None, victim.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    victim.stderr.close()
    assert victim.returncode == -signal.SIGKILL
    saved = load_resume_state(killed / "resume.safetensors").progress.step
    assert 4 <= saved < ITERATIONS and saved % 4 == 0  # killed mid-run, after a checkpoint

    # the uninterrupted reference and the resumed run go side by side
    reference = subprocess.Popen(command(ref), cwd=REPO, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    resumed = subprocess.run(command(killed, "--resume"), cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
    _, ref_err = reference.communicate(timeout=300)
    assert reference.returncode == 0, ref_err
    assert resumed.returncode == 0, resumed.stderr

    w_ref, meta_ref = load_checkpoint(ref / "last.safetensors")
    w_res, meta_res = load_checkpoint(killed / "last.safetensors")
    assert meta_ref["step"] == meta_res["step"] == ITERATIONS
    assert w_ref.keys() == w_res.keys()
    for k in w_ref:
        assert torch.equal(w_ref[k], w_res[k]), k
    assert meta_ref["sha256"] == meta_res["sha256"]
    assert int(w_res["loss_calls"]) == ITERATIONS  # the toy counts its training steps: none replayed twice

    log_ref, log_res = read_log(ref / "log.jsonl"), read_log(killed / "log.jsonl")
    losses = lambda log: [(r["step"], r["loss"]) for r in log if r["event"] == "step"]  # noqa: E731
    assert losses(log_res) == losses(log_ref)  # every step once, with identical losses
    assert [r["event"] for r in log_res if r["event"] in ("start", "resume")] == ["start", "resume"]
    resume_rec = next(r for r in log_res if r["event"] == "resume")
    assert resume_rec["step"] == saved
    end_ref, end_res = log_ref[-1], log_res[-1]
    assert end_ref["event"] == end_res["event"] == "end" and end_ref["weights_sha256"] == end_res["weights_sha256"]
