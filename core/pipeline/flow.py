"""The ``flow`` stage: correlation records (or features records and a model) → dense flow records.

Pixel flows of both directions at the original image sizes. A correlation
record is matched by :func:`matching_rule`: the rule asked for, else the rule
of the model that refined the record (:func:`refined_matching`), else kernel
soft-argmax; a features record given with a model runs the model's head
(:func:`model_flow_record`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from ..ncnet_consensus import softmax_over_target
from ..correlation import transpose_corr
from ..errors import DataError, UsageError, param
from ..flow import match_confidence, matches_from_corr, matches_to_flow
from ..io.records import PairRecord
from ..models import build_model, get_builder
from .features import model_stage, record_backbone, record_features, to_numpy
from .fill_layers import LayerFiller
from .refine import untrained_warning

#: The matching rule of a correlation record no model refined.
DEFAULT_METHOD = "kernel-soft-argmax"


def flows_from_matches(
    src_to_trg: torch.Tensor, trg_to_src: torch.Tensor, src_size: tuple[int, int], trg_size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Match grids ``(1, h, w, 2)`` of both directions → pixel flows ``(H_src, W_src, 2)``, ``(H_trg, W_trg, 2)``."""
    f_st = matches_to_flow(src_to_trg.float(), src_size, trg_size)[0]
    f_ts = matches_to_flow(trg_to_src.float(), trg_size, src_size)[0]
    return to_numpy(f_st), to_numpy(f_ts)


def model_pixel_flows(model, m, src_size: tuple[int, int], trg_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A model's pixel flows of one pair (:meth:`CorrespondenceModel.pixel_flows`) as numpy ``(H, W, 2)`` each."""
    f_st, f_ts = model.pixel_flows(m, src_size, trg_size)
    return to_numpy(f_st[0].float()), to_numpy(f_ts[0].float())


def upsample_confidence(conf: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Per-cell confidence ``(1, h, w)`` → ``(H, W)`` at an image's size (bilinear, align_corners)."""
    c = torch.nn.functional.interpolate(conf.float().unsqueeze(1), size=size, mode="bilinear", align_corners=True)
    return to_numpy(c[0, 0])


def refined_matching(rec: PairRecord) -> dict[str, str] | None:
    """The matching rule a refined record asks for (``corr`` attrs ``matching``, ``confidence``), or None.

    ``refine`` stores the rule of the model that refined the record (NC-Net's
    and DCCNet's evaluation: softmax then argmax); a plain ``correlate``
    record has none.
    """
    method = rec.corr_attrs.get("matching")
    if method is None:
        return None
    return {"method": str(method), "confidence": str(rec.corr_attrs.get("confidence", "max"))}


def matching_rule(rec: PairRecord, method: str | None = None) -> tuple[str, bool]:
    """The model-aware matching rule of a correlation record: ``(method, softmax_confidence)``.

    ``method`` when given, else the refining model's rule
    (:func:`refined_matching`), else :data:`DEFAULT_METHOD`. Confidence is the
    best softmax probability when the refining model's rule says so, else the
    best score.
    """
    rule = refined_matching(rec)
    chosen = method or (rule["method"] if rule else DEFAULT_METHOD)
    return chosen, rule is not None and rule["confidence"] == "softmax"


def _trg_to_src_key(rec: PairRecord) -> str | None:
    """The ``extra/`` key that the ``corr`` attribute ``scores_trg_to_src`` names, or None."""
    where = rec.corr_attrs.get("scores_trg_to_src")
    return str(where).removeprefix("extra/") if where else None


def record_trg_to_src_scores(rec: PairRecord, device: torch.device | str = "cpu") -> torch.Tensor | None:
    """The target→source scores ``(1, h_trg, w_trg, h_src, w_src)`` a record carries apart from ``corr``.

    DCCNet's refined records hold its second merge under the ``extra/`` name
    given by the ``corr`` attribute ``scores_trg_to_src``; other records hold
    none (None: the transpose of ``corr`` serves).
    """
    key = _trg_to_src_key(rec)
    if key is None:
        return None
    if key not in rec.extra:
        raise DataError(f"record '{rec.pair_id}': its corr names target→source scores 'extra/{key}', which it lacks")
    return torch.from_numpy(np.asarray(rec.extra[key], dtype=np.float32)).unsqueeze(0).to(device)


def flow_record(
    rec: PairRecord,
    method: str | None = None,
    beta: float = 50.0,
    sigma: float = 5.0,
    mutual: bool = False,
    keep_corr: bool = False,
    device: torch.device | str = "cpu",
    normalize: bool = False,
) -> PairRecord:
    """Add ``flow/src_to_trg`` and ``flow/trg_to_src`` (pixel coordinates) computed from ``corr``.

    The matches follow :func:`matching_rule`. Each direction reads its own
    scores: ``corr``, and for trg→src the record's own target→source scores
    (:func:`record_trg_to_src_scores`) or the transpose.
    """
    if rec.corr is None:
        raise DataError(
            f"record '{rec.pair_id}' has no correlation (it is a '{rec.stage}' record); "
            f"pipe it through 'semcorr correlate' first, or use 'semcorr flow {param('model')} NAME' on features"
        )
    chosen, softmax = matching_rule(rec, method)
    corr = torch.from_numpy(np.asarray(rec.corr, dtype=np.float32)).unsqueeze(0).to(device)
    corr_t = record_trg_to_src_scores(rec, device)
    if corr_t is None:
        corr_t = transpose_corr(corr)
    st, ts = matches_from_corr(corr, method=chosen, beta=beta, sigma=sigma, mutual=mutual, normalize=normalize, corr_t=corr_t)
    rec.flow["src_to_trg"], rec.flow["trg_to_src"] = flows_from_matches(st, ts, rec.src_size, rec.trg_size)
    rec.flow_attrs = {
        "method": chosen,
        "beta": beta,
        "sigma": sigma,
        "mutual_nn": bool(mutual),
        "normalized_scores": bool(normalize),
        "model": "none" if refined_matching(rec) is None else str(rec.corr_attrs.get("method", "none")),
    }
    for key, scores, size in (("src_to_trg", corr, rec.src_size), ("trg_to_src", corr_t, rec.trg_size)):
        rec.confidence[key] = upsample_confidence(match_confidence(softmax_over_target(scores) if softmax else scores), size)
    if not keep_corr:
        key = _trg_to_src_key(rec)
        if key is not None:
            rec.extra.pop(key, None)
            rec.extra_attrs.pop(key, None)
        rec.corr = None
        rec.corr_attrs = {}
    return rec


def coseg_from_matches(m, flow_st: np.ndarray, flow_ts: np.ndarray, src_size: tuple[int, int], trg_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Co-segmentation masks ``(H_src, W_src)``, ``(H_trg, W_trg)`` from a model's grid masks (first pair of the batch) and pixel flows."""
    from ..coseg import cosegment, upsample_mask

    return cosegment(upsample_mask(m.mask_src[0], src_size), upsample_mask(m.mask_trg[0], trg_size), flow_st, flow_ts)


def model_flow_record(rec: PairRecord, model, device: torch.device | str = "cpu", keep_inputs: bool = False) -> PairRecord:
    """Run a learned model's head on a features record; add flows (and the model's extras)."""
    needed = list(model.required_layers)
    fa, fb, _ = record_features(rec, needed, device, model_stage("flow", model.name), model=model.name)
    bb = {rec.feature_attrs.get(layer, {}).get("backbone") for layer in needed}
    if bb and bb != {model.backbone.name}:
        raise UsageError(
            f"record '{rec.pair_id}' holds {', '.join(sorted(str(b) for b in bb))} features but the {model.name} "
            f"model uses {model.backbone.name}; re-run extract with {param('backbone')} {model.backbone.name}"
        )
    with torch.no_grad():
        m = model.head(dict(zip(needed, fa)), dict(zip(needed, fb)))
        rec.flow["src_to_trg"], rec.flow["trg_to_src"] = model_pixel_flows(model, m, rec.src_size, rec.trg_size)
    rec.flow_attrs = {"model": model.name, "weights": getattr(model, "weights_id", "unknown")}
    if m.confidence_src is not None:
        rec.confidence["src_to_trg"] = upsample_confidence(m.confidence_src, rec.src_size)
    if m.confidence_trg is not None:
        rec.confidence["trg_to_src"] = upsample_confidence(m.confidence_trg, rec.trg_size)
    if m.mask_src is not None and m.mask_trg is not None:
        rec.mask["src"], rec.mask["trg"] = coseg_from_matches(m, rec.flow["src_to_trg"], rec.flow["trg_to_src"], rec.src_size, rec.trg_size)
    for key, value in m.extra.items():
        rec.extra[f"{model.name}/{key}"] = to_numpy(value[0])
    if not keep_inputs:
        rec.features = {"src": {}, "trg": {}}
        rec.feature_attrs = {}
        rec.corr = None
    return rec


def load_flow_model(name: str, rec: PairRecord, weights: str | Path | None, device: torch.device | str = "cpu"):
    """Model ``name`` for the backbone that made ``rec``'s features (:func:`record_backbone`), ready to run its head.

    The backbone is never run (the head reads stored features), so it is built with random weights.
    """
    backbone = record_backbone(rec, model_stage("flow", name))
    return build_model(name, backbone=backbone, backbone_weights="random", weights=weights).to(device).eval()


def flow_records(
    records: Iterable[PairRecord],
    model: str | None = None,
    weights: str | Path | None = "default",
    keep_inputs: bool = False,
    device: torch.device | str = "cpu",
    filler: LayerFiller | None = None,
    warn: Callable[[str], None] | None = None,
    **matching,
) -> Iterator[PairRecord]:
    """The ``flow`` stage on a stream.

    Without ``model``: :func:`flow_record` on correlation records
    (``matching``: its ``method``, ``beta``, ``sigma``, ``mutual``,
    ``normalize``). With ``model``: :func:`model_flow_record` on features
    records, the model built for the first record's backbone, missing layers
    computed by ``filler``; ``warn(text)`` hears once that the head is
    untrained (``weights=None``). An unknown ``model`` is refused at once,
    before any record is read.
    """
    if model is not None:
        get_builder(model)
    return _flow_stream(records, model, weights, keep_inputs, device, filler or LayerFiller(device), warn, matching)


def _flow_stream(records, model, weights, keep, device, filler, warn, matching):
    net = None
    for rec in records:
        if model is None:
            yield flow_record(rec, keep_corr=keep, device=device, **matching)
            continue
        if net is None:
            net = load_flow_model(model, rec, weights, device)
            if weights is None and warn is not None:
                warn(untrained_warning(model))
        yield model_flow_record(filler.fill(rec, net.required_layers, model, net.input_resize), net, device, keep_inputs=keep)
