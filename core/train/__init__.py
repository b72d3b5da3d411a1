"""The training engine behind ``semcorr train``.

* :func:`train` / :class:`TrainOptions` / :class:`TrainResult` — one run (or
  one process of a ``torchrun`` run); every option is declared once, in
  :mod:`semcorr.train.options`;
* :mod:`semcorr.train.state` — the pickle-free resumable state;
* :mod:`semcorr.train.rundir` — the run directory and its refusals;
* :mod:`semcorr.train.distributed` — torchrun environment, process group, collectives;
* :mod:`semcorr.train.feedback` — ``log.jsonl``, progress bar, TensorBoard;
* :mod:`semcorr.train.toy` — a tiny model (``--model toy``) for demos and tests.

The names below are loaded when first used, so reading :mod:`semcorr.train.options`
(as ``semcorr train`` does before checking its options) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name → the submodule that defines it.
_WHERE = {
    "TrainingDiverged": "engine",
    "TrainingInterrupted": "engine",
    "TrainResult": "engine",
    "Trainer": "engine",
    "train": "engine",
    "TrainOptions": "options",
    "Hyper": "hyper",
    "resolve_hyper": "hyper",
    "build_training_model": "models",
    "register_training_model": "models",
    "training_model_names": "models",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)


__all__ = sorted(_WHERE)
