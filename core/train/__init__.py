"""The training engine behind ``semcorr train``.

* :func:`train` / :class:`TrainOptions` / :class:`TrainResult` — one run (or
  one process of a ``torchrun`` run);
* :mod:`core.train.state` — the pickle-free resumable state;
* :mod:`core.train.rundir` — the run directory and its refusals;
* :mod:`core.train.distributed` — torchrun environment, process group, collectives;
* :mod:`core.train.feedback` — ``log.jsonl``, progress bar, TensorBoard;
* :mod:`core.train.toy` — a tiny model (``--model toy``) for demos and tests.
"""

from .engine import TrainingDiverged, TrainingInterrupted, TrainOptions, TrainResult, Trainer, train
from .hyper import Hyper, resolve_hyper
from .models import build_training_model, register_training_model, training_model_names

__all__ = [
    "Hyper",
    "TrainOptions",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "TrainingInterrupted",
    "build_training_model",
    "register_training_model",
    "resolve_hyper",
    "train",
    "training_model_names",
]
