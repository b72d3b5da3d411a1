"""Every option of a training run, declared once: :class:`TrainOptions`.

Each field carries its help text and, in its metadata, what else the callers need:
``hyper`` (read by :func:`semcorr.train.hyper.resolve_hyper`, see :data:`HYPER_FIELDS`) and
``choices`` (the values it takes). The engine reads the fields; ``semcorr train`` builds its
command-line options from them (flag ``--`` + the name with dashes unless the CLI says otherwise),
so a new option is one new field here.
"""

from __future__ import annotations

from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any

from .hyper import OPTIMIZERS
from .schedule import UNITS

VAL_METRICS = ("auto", "loss", "pck")


def option(default: Any = MISSING, help: str = "", *, hyper: bool = False, choices: tuple[str, ...] | None = None, factory: Any = MISSING, cli: bool = True) -> Any:
    """A :class:`TrainOptions` field: its default (none: required), ``help``, and metadata.

    ``hyper``: a hyper-parameter (:data:`HYPER_FIELDS`); ``choices``: the values it takes;
    ``cli``: whether the command line sets it (``command`` is recorded, not typed).
    """
    meta = {"help": help, "hyper": hyper, "choices": choices, "cli": cli}
    if factory is not MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainOptions:
    """Everything ``semcorr train`` can be told. ``None`` means: the model's ``train_defaults``."""

    model: str = option(help="Model name (sfnet, ncnet, dccnet, mmnet; toy for demos).")
    data: str = option(help="Training data SPEC (see above).")
    out: Path = option(help="Run directory (required).")
    epochs: int | None = option(None, "Training length in epochs.", hyper=True)
    iterations: int | None = option(None, "Training length in optimizer steps.", hyper=True)
    batch_size: int | None = option(None, "Pairs per step and per process.", hyper=True)
    lr: float | None = option(None, "Base learning rate.", hyper=True)
    optimizer: str | None = option(None, "adam or sgd.", hyper=True, choices=OPTIMIZERS)
    lr_schedule: str | None = option(None, "step, cosine or none.", hyper=True)
    lr_milestones: list[int] | None = option(None, "Step schedule milestones, e.g. 30,40.", hyper=True)
    lr_step_size: int | None = option(None, "Step schedule period.", hyper=True)
    lr_gamma: float | None = option(None, "Step schedule decay factor.", hyper=True)
    lr_unit: str | None = option(None, "Step schedule unit: epoch or iteration.", hyper=True, choices=UNITS)
    momentum: float | None = option(None, "SGD momentum.", hyper=True)
    weight_decay: float | None = option(None, "Weight decay.", hyper=True)
    image_size: int | tuple[int, int] | None = option(None, "Training images are resized to N x N (16 to 4096).", hyper=True)
    backbone: str | None = option(None, "Backbone (mobilenet_v2, resnet50, resnet101, fcn_resnet101).")
    backbone_weights: str | None = option(None, "default, random, a torchvision name or a file.")
    model_options: dict[str, Any] = option(help="Model builder option KEY=VALUE (repeatable).", factory=dict)
    init_weights: str | None = option(None, "Start from these weights (project or official checkpoint).")
    device: str = option("auto", "auto, cpu or cuda (torchrun: one GPU per process).")
    seed: int = option(0, "Seed of initialisation, data order and augmentation.")
    val: str | None = option(None, "Validation data SPEC (default split: val).")
    val_every: int | None = option(None, "Validate every N steps (default: every epoch, or every checkpoint).")
    val_metric: str = option("auto", "auto (pck when the pairs have keypoints, else loss), loss or pck.", choices=VAL_METRICS)
    patience: int | None = option(5, "Stop after N validations without improvement (0: never).")
    pck_alpha: float = option(0.1, "PCK threshold for validation.")
    resume: bool = option(False, "Continue the run in the run directory (starts it when there is nothing to resume).")
    overwrite: bool = option(False, "Replace the run in the run directory.")
    checkpoint_every: int = option(500, "Save weights and state every N steps.")
    log_every: int = option(10, "Write a log.jsonl record every N steps.")
    workers: int | None = option(None, "Data-loading processes per training process (default: 0 on CPU, up to 4 on GPU).")
    limit_pairs: int | None = option(None, "Use a seeded subset of N training (and validation) items.")
    tensorboard: bool = option(False, "Also log to RUN_DIR/tensorboard (needs the tensorboard package).")
    deterministic: bool = option(True, "Deterministic kernels (bit-identical resume).")
    find_unused_parameters: bool = option(False, "DDP: allow parameters the loss does not use.")
    quiet: bool = option(False, "No progress bar or messages.")
    command: str = option("", "The command line that started the run (recorded in run.json).", cli=False)


def option_fields() -> tuple[Field, ...]:
    """The fields of :class:`TrainOptions`, in declaration order."""
    return fields(TrainOptions)


#: ``TrainOptions`` fields that :func:`semcorr.train.hyper.resolve_hyper` reads.
HYPER_FIELDS = tuple(f.name for f in option_fields() if f.metadata["hyper"])

__all__ = ["TrainOptions", "HYPER_FIELDS", "VAL_METRICS", "option_fields"]
