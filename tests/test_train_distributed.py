"""torchrun with two CPU processes (gloo): the ranks end identical, only rank 0 writes, the data is sharded."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from conftest import CALTECH, REPO
from semcorr.train.feedback import read_log
from semcorr.weights import load_checkpoint


def torchrun() -> list[str]:
    exe = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    return [exe] if Path(exe).is_file() else [sys.executable, "-m", "torch.distributed.run"]


def train_args(out: Path, batch_size: int) -> list[str]:
    return [
        "train", "--model", "toy", "--model-opt", "dropout=0", "--data", f"folder:{CALTECH}", "--out", str(out),
        "--iterations", "4", "--batch-size", str(batch_size), "--image-size", "32", "--checkpoint-every", "2",
        "--log-every", "1", "--limit-pairs", "8", "--seed", "5", "--device", "cpu", "-q",
    ]  # fmt: skip


def test_torchrun_two_cpu_processes(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    ddp_out, single_out = tmp_path / "ddp", tmp_path / "single"
    ddp = subprocess.Popen(
        [*torchrun(), "--standalone", "--nproc_per_node", "2", "-m", "semcorr_cli.main", *train_args(ddp_out, 2)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    # meanwhile, here: the same global batch in one process (1 x 4 pairs instead of 2 x 2) trains the same way
    from typer.testing import CliRunner

    from semcorr_cli.main import app

    single = CliRunner().invoke(app, train_args(single_out, 4))
    _, ddp_err = ddp.communicate(timeout=300)
    assert ddp.returncode == 0, ddp_err[-3000:]
    assert single.exit_code == 0, single.output

    log = read_log(ddp_out / "log.jsonl")
    events = [r["event"] for r in log]
    assert events.count("start") == 1 and events.count("end") == 1  # one writer: rank 0
    assert [r["step"] for r in log if r["event"] == "step"] == [1, 2, 3, 4]
    assert [r["step"] for r in log if r["event"] == "checkpoint"] == [2, 4]
    start, end = log[0], log[-1]
    assert start["world_size"] == 2 and start["steps_per_epoch"] == 2  # 8 pairs / (2 x 2)
    assert end["ranks_identical"] is True and len(end["rank_fingerprints"]) == 2
    assert end["rank_fingerprints"][0] == end["rank_fingerprints"][1] == end["weights_sha256"][:15]
    assert sorted(p.name for p in ddp_out.iterdir()) == sorted(
        ["run.json", "log.jsonl", "resume.safetensors", "last.safetensors", "last.json"]
    )
    assert json.loads((ddp_out / "last.json").read_text())["world_size"] == 2

    w_ddp, _ = load_checkpoint(ddp_out / "last.safetensors")
    w_one, _ = load_checkpoint(single_out / "last.safetensors")
    gap = max(float((w_ddp[k] - v).abs().max()) for k, v in w_one.items() if v.is_floating_point())
    # each rank took its half of the same global batch and DDP averaged the gradients: equal up to
    # rounding (~1e-8 here; a rank training on the other's data, or alone, differs by ~1e-3)
    assert gap < 1e-5, gap
    ddp_losses = [r["loss"] for r in log if r["event"] == "step"]
    one_losses = [r["loss"] for r in read_log(single_out / "log.jsonl") if r["event"] == "step"]
    assert torch.allclose(torch.tensor(ddp_losses), torch.tensor(one_losses), atol=1e-4)
