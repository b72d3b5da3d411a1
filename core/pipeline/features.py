"""What every stage reads from a features record: its layers as tensors, and the backbone that made them."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import DataError, UsageError, param
from ..io.records import PairRecord


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A tensor as a float32 numpy array on the CPU (what records store)."""
    return t.detach().float().cpu().numpy()


def no_features_error(rec: PairRecord, stage: str) -> DataError:
    """The one sentence for a record without features read by ``stage`` (e.g. ``refine``)."""
    return DataError(f"record '{rec.pair_id}' has no features (it is a '{rec.stage}' record); {stage} needs the output of 'semcorr extract'")


def record_backbone(rec: PairRecord, stage: str = "refine") -> str:
    """The backbone that made a record's features: the ``backbone`` attribute all its layers share.

    ``stage``: the command reading them, for errors. A record without
    features, or whose layers name no backbone or several, is a
    :class:`DataError` (there is no default to fall back to: a model built
    for another backbone would read the features wrongly).
    """
    if not rec.features["src"]:
        raise no_features_error(rec, stage)
    names = {a.get("backbone") for a in rec.feature_attrs.values()} - {None}
    if len(names) != 1:
        said = f"its layers name {', '.join(sorted(map(str, names)))}" if names else "its layers name none"
        raise DataError(f"record '{rec.pair_id}' does not say which backbone made its features ({said})")
    return str(names.pop())


def missing_layer_error(rec: PairRecord, layer: str, model: str | None = None, why: str = "") -> UsageError:
    """The one sentence for a record lacking ``layer``: which model reads it, what the record has, the fix.

    ``why``: a clause saying why the layer could not be computed here (e.g. its image is not found).
    """
    if model:
        reader, fix = f", which {model} reads", f"extract with {param('model')} {model}"
    else:
        reader, fix = "", f"re-run extract with {param('layers')}"
    why = f", {why}" if why else ""
    return UsageError(f"record '{rec.pair_id}' has no layer '{layer}'{reader} (it has {', '.join(rec.layers())}){why}; {fix}")


def record_features(
    rec: PairRecord, layers: list[str] | None, device, stage: str, model: str | None = None
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[str]]:
    """Features of a record as ``(1, C, h, w)`` tensors for ``layers`` (all when None).

    ``stage``: the command reading them, for errors. ``model``: the learned
    model that reads them; a missing layer's error then names it and the
    extract that gives its layers.
    """
    if not rec.features["src"]:
        raise no_features_error(rec, f"'{stage}'")
    available = rec.layers()
    layers = layers or available
    missing = [layer for layer in layers if layer not in available]
    if missing:
        raise missing_layer_error(rec, missing[0], model)
    fa = [torch.from_numpy(np.asarray(rec.features["src"][layer], dtype=np.float32)).unsqueeze(0).to(device) for layer in layers]
    fb = [torch.from_numpy(np.asarray(rec.features["trg"][layer], dtype=np.float32)).unsqueeze(0).to(device) for layer in layers]
    return fa, fb, layers


def model_stage(stage: str, model: str) -> str:
    """How errors name a stage run with a model: ``flow --model sfnet`` in the CLI (the flag is marked)."""
    return f"{stage} {param('model')} {model}"
