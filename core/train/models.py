"""Which models ``semcorr train`` can build: the :mod:`semcorr.models` registry plus training-only ones.

Training-only models (the :mod:`semcorr.train.toy` demo) are registered here, so
the main registry is left untouched; :func:`register_training_model` adds more.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import UsageError
from ..models import CorrespondenceModel, build_model, model_names

TRAINING_ONLY_MODELS: dict[str, str] = {"toy": "semcorr.train.toy:build_toy"}


def register_training_model(name: str, target: str) -> None:
    """Make ``name`` buildable by the trainer from ``"module:function"``."""
    TRAINING_ONLY_MODELS[name] = target


def training_model_names() -> list[str]:
    return model_names() + [n for n in TRAINING_ONLY_MODELS if n not in model_names()]


def build_training_model(name: str, **kwargs: Any) -> CorrespondenceModel:
    """Build ``name`` with builder keyword arguments (``backbone``, ``backbone_weights``, ``weights``, options)."""
    if name not in training_model_names():
        raise UsageError(f"unknown model '{name}'; choose one of {', '.join(training_model_names())}")
    if name in TRAINING_ONLY_MODELS and name not in model_names():
        module, func = TRAINING_ONLY_MODELS[name].split(":")
        return getattr(importlib.import_module(module), func)(**kwargs)
    return build_model(name, **kwargs)
