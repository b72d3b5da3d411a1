"""Model registry: one builder per architecture, looked up by name.

Every builder has the signature::

    build_<name>(backbone="mobilenet_v2", backbone_weights="default",
                 weights=None, **options) -> CorrespondenceModel

``weights`` is ``None`` (fresh head), ``"default"`` (the weights shipped with
semcorr for this backbone), a project checkpoint (``.safetensors`` with its
JSON sidecar) or the authors' released checkpoint file.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import UsageError
from .base import CorrespondenceModel, Matches

MODEL_BUILDERS: dict[str, str] = {
    "sfnet": "core.models.sfnet:build_sfnet",
    "ncnet": "core.models.ncnet:build_ncnet",
    "dccnet": "core.models.dccnet:build_dccnet",
    "mmnet": "core.models.mmnet:build_mmnet",
}


def model_names() -> list[str]:
    return list(MODEL_BUILDERS)


def get_builder(name: str):
    if name not in MODEL_BUILDERS:
        raise UsageError(f"unknown model '{name}'; choose one of {', '.join(MODEL_BUILDERS)}")
    module, func = MODEL_BUILDERS[name].split(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            raise UsageError(f"model '{name}' is not available in this version of semcorr yet") from None
        raise
    return getattr(mod, func)


def build_model(name: str, **kwargs: Any) -> CorrespondenceModel:
    """Build model ``name`` with the builder's keyword arguments."""
    return get_builder(name)(**kwargs)


__all__ = ["CorrespondenceModel", "Matches", "build_model", "model_names", "MODEL_BUILDERS"]
