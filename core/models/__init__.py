"""Model registry: one builder per architecture, looked up by name.

Every builder has the signature::

    build_<name>(backbone="mobilenet_v2", backbone_weights="default",
                 weights=None, **options) -> CorrespondenceModel

``weights`` is any spec of :func:`semcorr.models.pretrained.resolve`: ``None`` /
``"none"`` / ``"random"`` (fresh head), ``"default"`` (the weights shipped with
semcorr for this backbone, :data:`semcorr.models.pretrained.SHIPPED_WEIGHTS`), a
project checkpoint (``.safetensors`` with its JSON sidecar) or the authors'
released checkpoint file (read by the model class's ``read_released`` adapter).
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import UsageError
from .base import CorrespondenceModel, Matches

MODEL_BUILDERS: dict[str, str] = {
    "sfnet": "semcorr.models.sfnet:build_sfnet",
    "ncnet": "semcorr.models.ncnet:build_ncnet",
    "dccnet": "semcorr.models.dccnet:build_dccnet",
    "mmnet": "semcorr.models.mmnet:build_mmnet",
}


#: The model class of each builder (what :func:`semcorr.models.pretrained.resolve` reads weights for).
MODEL_CLASSES: dict[str, str] = {
    "sfnet": "semcorr.models.sfnet:SFNet",
    "ncnet": "semcorr.models.ncnet:NCNet",
    "dccnet": "semcorr.models.dccnet:DCCNet",
    "mmnet": "semcorr.models.mmnet:MMNet",
}


def model_names() -> list[str]:
    return list(MODEL_BUILDERS)


def get_builder(name: str):
    return _lookup(name, MODEL_BUILDERS)


def get_model_class(name: str) -> type[CorrespondenceModel]:
    """The class of model ``name``."""
    return _lookup(name, MODEL_CLASSES)


def _lookup(name: str, table: dict[str, str]):
    if name not in table:
        raise UsageError(f"unknown model '{name}'; choose one of {', '.join(table)}")
    module, func = table[name].split(":")
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


__all__ = ["CorrespondenceModel", "Matches", "build_model", "get_model_class", "model_names", "MODEL_BUILDERS"]
