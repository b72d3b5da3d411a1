"""The stages as library calls: extract → correlate → (refine) → flow, and what reads their records.

One module per stage; each stage takes a :class:`~semcorr.io.records.PairRecord`
(or a stream of them) and returns it with its own datasets added, so each CLI
command parses its options, calls one function here and prints:

* :mod:`.extract` — images → features records (:func:`build_extractor` chooses
  the layers, for a model when one is named; :func:`extract_pairs`);
* :mod:`.correlate` — features → 4D correlation (:func:`correlate_records`);
* :mod:`.refine` — features → NC-Net's / DCCNet's refined correlation (:func:`refine_records`);
* :mod:`.flow` — correlation, or features and a model → pixel flows
  (:func:`flow_records`; the model-aware matching rule :func:`matching_rule`);
* :mod:`.features` — what stages read from a record (:func:`record_features`,
  the backbone that made it: :func:`record_backbone`);
* :mod:`.fill_layers` — layers a model reads that a record lacks, computed from its images;
* :mod:`.heatmaps` — ``show``: a source point's scores over the target, per model;
* :mod:`.warping` — ``warp``: a flow record applied to an image, a mask or points;
* :mod:`.tracking` — ``propagate``: keypoints carried through a folder of frames;
* :mod:`.summary` — ``inspect``: what a record holds;
* :mod:`.predictors` — image pairs → flows, for ``evaluate`` (:func:`build_predictor`).

Names are loaded on first use (``from semcorr.pipeline import flow_records``
imports only what that stage needs; ``inspect`` stays free of torch).
Layering: this package is above :mod:`semcorr.models` (it builds models) and
below :mod:`semcorr.evaluate`; nothing in the library below it imports it.
"""

from __future__ import annotations

import importlib
from typing import Any

#: submodule → the names it gives this package.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "correlate": ('correlate_record', 'correlate_records'),
    "device": ('resolve_device',),
    "extract": ('DEFAULT_SIZE', 'FeatureExtractor', 'build_extractor', 'extract_pairs'),
    "features": ('missing_layer_error', 'record_backbone', 'record_features'),
    "fill_layers": ('LayerFiller', 'feature_provenance'),
    "flow": ('coseg_from_matches', 'flow_record', 'flow_records', 'flows_from_matches', 'load_flow_model', 'matching_rule', 'model_flow_record', 'model_pixel_flows', 'record_trg_to_src_scores', 'refined_matching'),
    "predictors": ('NN_DEFAULT_SIZE', 'IdentityPredictor', 'ModelPredictor', 'NearestNeighbourPredictor', 'SFNetPublishedPredictor', 'build_predictor', 'identity_flow'),
    "refine": ('TRG_TO_SRC_SCORES', 'build_refiner', 'refine_record', 'refine_records'),
    "heatmaps": ('show_point',),
    "warping": ('apply_flow', 'write_coseg_mask'),
    "tracking": ('propagate_folder',),
    "summary": ('summarise_records',),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
_MODULE_OF["correlate_scores"] = "..scores"

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module if module.startswith("..") else "." + module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
