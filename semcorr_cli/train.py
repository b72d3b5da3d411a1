"""``semcorr train``: train a model from a data SPEC into a run directory (alone or under torchrun)."""

from __future__ import annotations

import dataclasses
import inspect
import os
import shlex
import sys
import typing
from pathlib import Path
from typing import Any, Literal, Optional

import typer

from semcorr.errors import UsageError, param
from semcorr.parsing import parse_list

from .common import (
    check_outputs,
    device_option,
    err_console,
    flag_for,
    handle_errors,
    output_option,
    parse_model_options,
    print_json,
    quiet_option,
    renamed,
    size_option,
    working_size,
)

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


#: Command-line spellings of :class:`semcorr.train.options.TrainOptions` fields that are not ``--`` + the name with dashes.
FLAGS = {"model": ("--model", "-m"), "model_options": ("--model-opt",)}
#: What the command line types for a field, where it differs from the field (converted in :func:`train_options`).
TYPED = {"lr_milestones": Optional[str], "model_options": Optional[list[str]], "image_size": Optional[int], "out": Optional[Path], "patience": int}


def cli_option(f: dataclasses.Field) -> tuple[Any, Any]:
    """``(annotation, typer.Option)`` of one :class:`TrainOptions` field: its default, flags, help and choices."""
    from semcorr.train.options import TrainOptions

    help = f.metadata["help"]
    shared = {"out": output_option(help), "image_size": size_option(help), "device": device_option(help), "quiet": quiet_option(help)}
    annotation = TYPED.get(f.name, typing.get_type_hints(TrainOptions)[f.name])
    if f.name in shared:
        return annotation, shared[f.name]
    required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    default = ... if required else (None if f.default is dataclasses.MISSING else f.default)
    flags = FLAGS.get(f.name, ("--" + f.name.replace("_", "-"),))
    if default is True:
        flags = (f"{flags[0]}/--no-{flags[0][2:]}",)
    choices = f.metadata["choices"]
    if choices:
        annotation = Literal[choices] if default is not None else Optional[Literal[choices]]
    return annotation, typer.Option(default, *flags, help=help, **({"case_sensitive": False} if choices else {}))


def command_parameters() -> list[inspect.Parameter]:
    """The command's parameters: one per :class:`TrainOptions` field the command line sets, the old spellings and ``--json``."""
    from semcorr.train.options import option_fields

    extra = {
        "out_old": (Optional[Path], typer.Option(None, "--out", hidden=True)),  # the old spelling of --output
        "image_size_old": (Optional[int], typer.Option(None, "--image-size", hidden=True)),  # the old spelling of --size
        "json_out": (bool, typer.Option(False, "--json", help="Print the result as JSON on stdout.")),
    }
    declared = [(f.name, *cli_option(f)) for f in option_fields() if f.metadata["cli"]]
    declared += [(name, *spec) for name, spec in extra.items()]
    return [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=ann) for name, ann, opt in declared]


def train_options(given: dict[str, Any]) -> dict[str, Any]:
    """The command's values → :class:`TrainOptions` keyword arguments: old spellings folded in, lists parsed, checked before torch is imported."""
    o = dict(given)
    o["out"] = renamed(o["out"], o.pop("out_old"), "--output", "--out")
    if o["out"] is None:
        raise UsageError("train needs a run directory: -o/--output RUN_DIR")
    o["image_size"] = working_size(renamed(o["image_size"], o.pop("image_size_old"), "--size", "--image-size"))
    if o["workers"] is not None and o["workers"] < 0:
        raise UsageError("--workers must be 0 or more")
    if o["lr_milestones"] is not None:
        o["lr_milestones"] = parse_list(o["lr_milestones"], int, param("lr_milestones"), "comma-separated integers")
    o["model_options"] = parse_model_options(o["model_options"])
    o["patience"] = o["patience"] or None
    return o


def register(app: typer.Typer) -> None:
    def train_cmd(**given: Any) -> None:
        json_out = given.pop("json_out")
        o = train_options(given)
        out, quiet = o["out"], o["quiet"]
        check_outputs(folder=out)  # before torch is imported

        from semcorr.train import TrainingInterrupted, TrainOptions, train

        options = TrainOptions(**o, command=command_line())
        try:
            result = train(options, name_of=flag_for)
        except TrainingInterrupted as exc:
            # everything is saved; end at once, without waiting for an abandoned step still inside torch
            # (exc.worker_alive) or for the interpreter's slow teardown
            err_console.print(f"[bold red]semcorr: error:[/] {exc.render(flag_for)}", highlight=False, soft_wrap=True)
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

    train_cmd.__signature__ = inspect.Signature(command_parameters())  # type: ignore[attr-defined]
    app.command("train", help=HELP)(handle_errors(train_cmd))
