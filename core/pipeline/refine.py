"""The ``refine`` stage: features records → records with NC-Net's or DCCNet's refined correlation."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError, UsageError, param
from ..io.records import PairRecord
from ..models import build_model
from .features import model_stage, record_backbone, record_features, to_numpy
from .fill_layers import LayerFiller

#: The models whose head refines a correlation.
REFINERS = ("ncnet", "dccnet")
#: Name under ``extra/<model>/`` of the target→source scores of a model whose two directions differ.
TRG_TO_SRC_SCORES = "fused_trg_to_src"


def build_refiner(model: str, backbone: str, weights: str | Path | None):
    """The model whose head refines records; its backbone is never run (features come stored)."""
    if model not in REFINERS:
        raise UsageError(f"{param('model')} must be {' or '.join(REFINERS)}, not '{model}'")
    return build_model(model, backbone=backbone, backbone_weights="random", weights=weights)


def refine_record(rec: PairRecord, net, device) -> PairRecord:
    """Run the model's head on a features record; set ``corr`` (and DCCNet's fusion weights)."""
    backbone = record_backbone(rec)
    if backbone != net.backbone.name:
        raise DataError(
            f"record '{rec.pair_id}' holds {backbone} features but the first record's were {net.backbone.name}; "
            "refine one backbone per stream"
        )
    layers = net.required_layers
    fa, fb, _ = record_features(rec, layers, device, model_stage("refine", net.name), model=net.name)
    with torch.no_grad():
        m = net.head(dict(zip(layers, fa)), dict(zip(layers, fb)))
    rec.corr = to_numpy(m.corr[0])
    attrs = rec.feature_attrs.get(net.layer, {})
    rec.corr_attrs = {
        "method": net.name,
        "scores": "fused-distribution-src-to-trg" if net.name == "dccnet" else "mutual-consensus",
        "layers": layers,
        "backbone": backbone,
        "backbone_weights": attrs.get("weights"),
        "model_config": net.config(),
        "weights": net.weights_id,
        # how `flow` reads this record by default: the model's own evaluation rule
        "matching": net.test_matching["method"],
        "confidence": net.test_matching["confidence"],
    }
    if m.corr_trg_to_src is not None:
        key = f"{net.name}/{TRG_TO_SRC_SCORES}"
        rec.extra[key] = to_numpy(m.corr_trg_to_src[0])
        rec.extra_attrs[key] = {"scores": "fused-distribution-trg-to-src"}
        rec.corr_attrs["scores_trg_to_src"] = f"extra/{key}"
    for key, value in m.extra.items():
        rec.extra[f"{net.name}/{key}"] = np.asarray(to_numpy(value[0]))
        rec.extra_attrs[f"{net.name}/{key}"] = {"channels": ["local", "context"]} if key.startswith("fusion_") else {}
    rec.flow, rec.flow_attrs, rec.confidence = {}, {}, {}
    return rec


def untrained_warning(model: str) -> str:
    """What a stage says when a model's head runs without weights (``weights=None``)."""
    return f"{param('weights')} none: the {model} head is untrained"


def refine_records(
    records: Iterable[PairRecord],
    model: str,
    weights: str | Path | None = "default",
    device: torch.device | str = "cpu",
    filler: LayerFiller | None = None,
    warn: Callable[[str], None] | None = None,
) -> Iterator[PairRecord]:
    """:func:`refine_record` on a stream; the model is built for the first record's backbone.

    Layers the model reads that a record lacks are computed from its images
    by ``filler`` (default: a silent :class:`~semcorr.pipeline.fill_layers.LayerFiller`).
    ``warn(text)`` hears once that the head is untrained (``weights=None``).
    """
    filler = filler or LayerFiller(device)
    net = None
    for rec in records:
        if net is None:
            net = build_refiner(model, record_backbone(rec), weights).to(device).eval()
            if weights is None and warn is not None:
                warn(untrained_warning(model))
        yield refine_record(filler.fill(rec, net.required_layers, model, net.input_resize), net, device)
