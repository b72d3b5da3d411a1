"""``semcorr train``: train a model from a data SPEC into a run directory (alone or under torchrun)."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

from core.errors import UsageError, param
from core.parsing import parse_list

from .common import check_outputs, err_console, handle_errors, parse_model_options, print_json, renamed, working_size

HELP = """Train a correspondence model; every option not given comes from the model's paper, sized for a GPU.

Without a GPU, options not given take CPU-sized values instead (the sizes of the recipes of the shipped weights: image size, batch size, length, consensus layers), said once on stderr and recorded in run.json; options given always win.

Data SPEC: folder:PATH[,masks=DIR] (a class-per-folder tree such as Caltech-101's 101_ObjectCategories), voc:ROOT[:split], pf-pascal:ROOT[:split], spair:ROOT[:split] or cub:ROOT[:split].

The model's supervision picks the pairs: weak → two images of one class; synthetic → two random affine warps of one image; keypoints → annotated pairs (synthetic pairs from a folder tree).

RUN_DIR receives run.json, log.jsonl, last.safetensors (+ .json), best.safetensors (with --val) and resume.safetensors. Ctrl-C stops within seconds and saves the state; --resume continues it and reaches the same final weights. See docs/training.md.

Examples:

  semcorr train --model ncnet --data folder:../shared/data/caltech-101-subset/101_ObjectCategories --iterations 3 -o runs/try

  semcorr train --model ncnet --data folder:../shared/data/caltech-101-subset/101_ObjectCategories --iterations 3 -o runs/try --resume

  semcorr train --model sfnet --data folder:../shared/data/caltech-101-subset/101_ObjectCategories --iterations 2 --size 128 --batch-size 2 -o runs/sfnet-demo

  torchrun --standalone --nproc_per_node 4 -m semcorr_cli.main train --model ncnet --data pf-pascal:/data/PF-PASCAL:train -o runs/ncnet
"""


def command_line() -> str:
    """The command as typed (recorded in run.json)."""
    return " ".join(shlex.quote(a) for a in ["semcorr"] + sys.argv[1:])


def register(app: typer.Typer) -> None:
    @app.command("train", help=HELP)
    @handle_errors
    def train_cmd(
        model: str = typer.Option(..., "--model", "-m", help="Model name (sfnet, ncnet, dccnet, mmnet; toy for demos)."),
        data: str = typer.Option(..., "--data", help="Training data SPEC (see above)."),
        output: Path = typer.Option(None, "-o", "--output", help="Run directory (required)."),
        out: Path = typer.Option(None, "--out", hidden=True),  # the old spelling of --output
        epochs: Optional[int] = typer.Option(None, "--epochs", help="Training length in epochs."),
        iterations: Optional[int] = typer.Option(None, "--iterations", help="Training length in optimizer steps."),
        batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Pairs per step and per process."),
        lr: Optional[float] = typer.Option(None, "--lr", help="Base learning rate."),
        optimizer: Optional[str] = typer.Option(None, "--optimizer", help="adam or sgd."),
        lr_schedule: Optional[str] = typer.Option(None, "--lr-schedule", help="step, cosine or none."),
        lr_milestones: Optional[str] = typer.Option(None, "--lr-milestones", help="Step schedule milestones, e.g. 30,40."),
        lr_step_size: Optional[int] = typer.Option(None, "--lr-step-size", help="Step schedule period."),
        lr_gamma: Optional[float] = typer.Option(None, "--lr-gamma", help="Step schedule decay factor."),
        lr_unit: Optional[str] = typer.Option(None, "--lr-unit", help="Step schedule unit: epoch or iteration."),
        momentum: Optional[float] = typer.Option(None, "--momentum", help="SGD momentum."),
        weight_decay: Optional[float] = typer.Option(None, "--weight-decay", help="Weight decay."),
        size: Optional[int] = typer.Option(None, "--size", help="Training images are resized to N x N (16 to 4096)."),
        image_size: Optional[int] = typer.Option(None, "--image-size", hidden=True),  # the old spelling of --size
        backbone: Optional[str] = typer.Option(None, "--backbone", help="Backbone (mobilenet_v2, resnet50, resnet101, fcn_resnet101)."),
        backbone_weights: Optional[str] = typer.Option(None, "--backbone-weights", help="default, random, a torchvision name or a file."),
        model_opt: Optional[list[str]] = typer.Option(None, "--model-opt", help="Model builder option KEY=VALUE (repeatable)."),
        init_weights: Optional[str] = typer.Option(None, "--init-weights", help="Start from these weights (project or official checkpoint)."),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda (torchrun: one GPU per process)."),
        seed: int = typer.Option(0, "--seed", help="Seed of initialisation, data order and augmentation."),
        val: Optional[str] = typer.Option(None, "--val", help="Validation data SPEC (default split: val)."),
        val_every: Optional[int] = typer.Option(None, "--val-every", help="Validate every N steps (default: every epoch, or every checkpoint)."),
        val_metric: str = typer.Option("auto", "--val-metric", help="auto (pck when the pairs have keypoints, else loss), loss or pck."),
        patience: int = typer.Option(5, "--patience", help="Stop after N validations without improvement (0: never)."),
        pck_alpha: float = typer.Option(0.1, "--pck-alpha", help="PCK threshold for validation."),
        resume: bool = typer.Option(False, "--resume", help="Continue the run in the run directory (starts it when there is nothing to resume)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace the run in the run directory."),
        checkpoint_every: int = typer.Option(500, "--checkpoint-every", help="Save weights and state every N steps."),
        log_every: int = typer.Option(10, "--log-every", help="Write a log.jsonl record every N steps."),
        workers: Optional[int] = typer.Option(None, "--workers", help="Data-loading processes per training process (default: 0 on CPU, up to 4 on GPU)."),
        limit_pairs: Optional[int] = typer.Option(None, "--limit-pairs", help="Use a seeded subset of N training (and validation) items."),
        tensorboard: bool = typer.Option(False, "--tensorboard", help="Also log to RUN_DIR/tensorboard (needs the tensorboard package)."),
        deterministic: bool = typer.Option(True, "--deterministic/--no-deterministic", help="Deterministic kernels (bit-identical resume)."),
        find_unused: bool = typer.Option(False, "--find-unused-parameters", help="DDP: allow parameters the loss does not use."),
        json_out: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
        quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress bar or messages."),
    ) -> None:
        out = renamed(output, out, "--output", "--out")
        if out is None:
            raise UsageError("train needs a run directory: -o/--output RUN_DIR")
        image_size = working_size(renamed(size, image_size, "--size", "--image-size"))
        if workers is not None and workers < 0:
            raise UsageError("--workers must be 0 or more")
        check_outputs(folder=out)  # before torch is imported

        from core.train import TrainingInterrupted, TrainOptions, train

        options = TrainOptions(
            model=model, data=data, out=out, epochs=epochs, iterations=iterations, batch_size=batch_size, lr=lr,
            optimizer=optimizer, lr_schedule=lr_schedule, lr_milestones=None if lr_milestones is None else parse_list(lr_milestones, int, param("lr_milestones"), "comma-separated integers"),
            lr_step_size=lr_step_size, lr_gamma=lr_gamma, lr_unit=lr_unit, momentum=momentum, weight_decay=weight_decay,
            image_size=image_size, backbone=backbone, backbone_weights=backbone_weights,
            model_options=parse_model_options(model_opt), init_weights=init_weights, device=device, seed=seed, val=val,
            val_every=val_every, val_metric=val_metric, patience=patience or None, pck_alpha=pck_alpha, resume=resume,
            overwrite=overwrite, checkpoint_every=checkpoint_every, log_every=log_every, workers=workers,
            limit_pairs=limit_pairs, tensorboard=tensorboard, quiet=quiet, deterministic=deterministic,
            find_unused_parameters=find_unused, command=command_line(),
        )  # fmt: skip
        try:
            result = train(options)
        except TrainingInterrupted as exc:
            # everything is saved; end at once, without waiting for an abandoned step still inside torch
            # (exc.worker_alive) or for the interpreter's slow teardown
            err_console.print(f"[bold red]semcorr: error:[/] {exc}", highlight=False, soft_wrap=True)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(exc.exit_code)
        except KeyboardInterrupt:  # a second Ctrl-C while the state was being saved, or one during set-up
            err_console.print("[bold red]semcorr: error:[/] interrupted; the last checkpoint written (if any) is kept", highlight=False, soft_wrap=True)
            sys.stderr.flush()
            os._exit(130)

        if int(os.environ.get("RANK", "0")) != 0:
            return
        summary = {
            "out": str(result.out),
            "step": result.step,
            "epoch": result.epoch,
            "finished": result.finished,
            "best_metric": result.best_metric,
            "best_step": result.best_step,
            "last_val": result.last_val,
            "resumed_from": result.resumed_from,
            "weights_sha256": result.weights_sha256,
        }
        if json_out:
            print_json(summary)
        elif not quiet:
            best = f"; best validation {result.best_metric:.4g} at step {result.best_step}" if result.best_metric is not None else ""
            err_console.print(
                f"{result.finished} at step {result.step} (epoch {result.epoch}){best}; weights in {result.out / 'last.safetensors'}",
                highlight=False,
                soft_wrap=True,
            )
