"""Scoring one pair under a protocol: from flows to the per-pair figures stored in a results file.

* keypoints → ``{"L": reference length, "errors": [pixel error or None], "n": evaluated}``
  (errors are kept, so PCK at any α can be recomputed when summarising or merging);
* dense flow → ``{"alphas": [...], "src_to_trg": {"correct": [...], "n": …}, "trg_to_src": {...}}``;
* masks → ``{"lt_acc": …, "iou": …}`` (fractions);
* co-segmentation → ``{"iou_src": …, "iou_trg": …}`` (fractions, :func:`score_coseg`);
* propagation (a clip) → ``{"frames": [{"t": …, "L": …, "errors": [...], "n": …}, …], "n": …}``,
  one entry per frame after the first (:func:`score_propagation`).

A missing prediction (a keypoint transferred from outside the flow's frame, a
NaN flow) is stored as the error :data:`MISSING_ERROR`, larger than any threshold.

torch (for bilinear sampling and mask warping) is imported when a pair is
scored, so that opening a benchmark and checking its pairs stays quick.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from ..errors import DataError
from ..metrics import CURVE_ALPHAS, correct_keypoints, dense_errors, keypoint_errors, label_transfer_accuracy, mask_iou, threshold_length
from ..protocols import Protocol

#: Stored error of a keypoint the method gave no position for (finite, so results stay strict JSON).
MISSING_ERROR = sys.float_info.max


def clamp_points(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Clamp finite points ``(N, 2)`` into an image of ``size = (H, W)`` (annotations on or just past the border)."""
    h, w = size
    out = np.array(points, dtype=np.float64)
    out[:, 0] = np.clip(out[:, 0], 0, w - 1)
    out[:, 1] = np.clip(out[:, 1], 0, h - 1)
    return out


def sample_flow(points: np.ndarray, flow: np.ndarray, sampling: str = "bilinear") -> np.ndarray:
    """Positions ``(N, 2)`` in the other image of the points ``(N, 2)`` of the flow's frame.

    ``bilinear`` interpolates the flow (:func:`semcorr.warp.points_through_flow`);
    ``nearest`` reads the flow at the rounded pixel. Query points are clamped
    into the frame; NaN points stay NaN.
    """
    flow = np.asarray(flow, dtype=np.float32)
    h, w = flow.shape[:2]
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    finite = np.isfinite(pts).all(axis=1)
    q = clamp_points(np.where(finite[:, None], pts, 0.0), (h, w))
    if sampling == "nearest":
        ix = np.rint(q[:, 0]).astype(np.int64)
        iy = np.rint(q[:, 1]).astype(np.int64)
        out = flow[iy, ix].astype(np.float64)
    elif sampling == "bilinear":
        import torch

        from ..warp import points_through_flow

        out = points_through_flow(torch.from_numpy(q), torch.from_numpy(flow).double()).numpy()
    else:
        raise ValueError(f"unknown sampling {sampling!r}")
    out[~finite] = np.nan
    return out


def rescale_points(points: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """Scale pixel ``(x, y)`` ``(..., 2)`` from an ``(H, W)`` image to a ``to_size`` one (x by W'/W, y by H'/H)."""
    scale = np.array([to_size[1] / from_size[1], to_size[0] / from_size[0]], dtype=np.float64)
    return np.asarray(points, dtype=np.float64) * scale


def _size(pair_size, flow: np.ndarray | None, side: str, pair_id: str) -> tuple[int, int]:
    """The image size: the dataset's, checked against the flow's frame when both are known."""
    flow_size = tuple(flow.shape[:2]) if flow is not None else None
    if pair_size is not None and flow_size is not None and tuple(pair_size) != flow_size:
        raise DataError(
            f"pair '{pair_id}': the {side} flow is {flow_size[1]}x{flow_size[0]} but the {side} image is "
            f"{pair_size[1]}x{pair_size[0]}"
        )
    size = pair_size if pair_size is not None else flow_size
    if size is None:
        raise DataError(f"pair '{pair_id}': the {side} image size is unknown (no image and no flow)")
    return int(size[0]), int(size[1])


def _errors_json(errors: np.ndarray) -> list[float | None]:
    return [None if np.isnan(e) else (MISSING_ERROR if np.isinf(e) else float(e)) for e in errors]


def score_keypoints(
    pair, flow_st: np.ndarray | None, flow_ts: np.ndarray | None, protocol: Protocol, transfer=None
) -> dict[str, Any]:
    """Transfer the query keypoints and measure them (see the module doc for the stored fields).

    ``transfer(points (N, 2), direction) -> (N, 2)`` is the model's own keypoint
    transfer (MMNet's): the query points, clamped into their image, go through
    it instead of sampling the flow (which may then be None).
    """
    src_size = _size(pair.src_size, flow_st, "source", pair.pair_id)
    trg_size = _size(pair.trg_size, flow_ts, "target", pair.pair_id)
    if protocol.direction == "src->trg":
        flow, query, gt, size, bbox = flow_st, pair.src_kps, pair.trg_kps, trg_size, pair.trg_bbox
        key = "src_to_trg"
    else:
        flow, query, gt, size, bbox = flow_ts, pair.trg_kps, pair.src_kps, src_size, pair.src_bbox
        key = "trg_to_src"
    if transfer is not None:  # the model moves the points itself (clamped into their image, as for a flow)
        finite = np.isfinite(query).all(axis=1)
        q = clamp_points(np.where(finite[:, None], query, 0.0), src_size if key == "src_to_trg" else trg_size)
        pred = transfer(np.where(finite[:, None], q, np.nan), protocol.direction)
    elif flow is None:
        raise DataError(f"pair '{pair.pair_id}': no flow/{key}, which the {protocol.name} protocol scores")
    else:
        pred = sample_flow(query, flow, protocol.sampling)
    valid = np.isfinite(query).all(axis=1) & np.isfinite(gt).all(axis=1)
    if protocol.measure_size is not None:
        pred, gt = rescale_points(pred, size, protocol.measure_size), rescale_points(gt, size, protocol.measure_size)
        bbox = rescale_points(np.reshape(bbox, (2, 2)), size, protocol.measure_size).reshape(4) if bbox is not None else None
        size = tuple(protocol.measure_size)
    if protocol.threshold == "bbox" and bbox is None:
        raise DataError(f"pair '{pair.pair_id}' has no object box for the bbox threshold; use the img or kps threshold")
    length = threshold_length(protocol.threshold, size=size, bbox=bbox, kps=gt)
    errors = keypoint_errors(pred, gt, valid)
    return {"L": float(length), "errors": _errors_json(errors), "n": int((~np.isnan(errors)).sum())}


def dense_alphas(protocol: Protocol) -> list[float]:
    """The α values dense counts are stored at: the PCK-curve grid plus the protocol's own."""
    return sorted(set(CURVE_ALPHAS) | {float(a) for a in protocol.alphas})


def score_flow(pair, flow_st: np.ndarray | None, flow_ts: np.ndarray | None, protocol: Protocol) -> dict[str, Any]:
    """Dense PCK counts of both flows against the ground truth, over each frame's foreground.

    ``L = max(H, W)`` of the image the flow is defined on.
    """
    alphas = dense_alphas(protocol)
    out: dict[str, Any] = {"alphas": alphas}
    for key, pred, gt, mask, size in (
        ("src_to_trg", flow_st, pair.flow_src_to_trg, pair.src_mask, pair.src_size),
        ("trg_to_src", flow_ts, pair.flow_trg_to_src, pair.trg_mask, pair.trg_size),
    ):
        if pred is None:
            raise DataError(f"pair '{pair.pair_id}': no flow/{key}, which the {protocol.name} protocol scores")
        _size(size, pred, "source" if key == "src_to_trg" else "target", pair.pair_id)
        err = dense_errors(pred, gt)[np.asarray(mask, dtype=bool)]
        correct, n = correct_keypoints(err, threshold_length(protocol.threshold, size=size), alphas)
        out[key] = {"correct": correct.tolist(), "n": n}
    return out


def score_mask(pair, flow_st: np.ndarray | None, flow_ts: np.ndarray | None, protocol: Protocol) -> dict[str, Any]:
    """LT-ACC and IoU of the mask transferred along the protocol's direction.

    ``trg->src``: the source mask is read through ``flow_trg_to_src`` into the
    target frame and compared with the target mask; ``src->trg`` the reverse.
    """
    if protocol.direction == "src->trg":
        flow, mask_from, mask_to, key, side = flow_st, pair.trg_mask, pair.src_mask, "src_to_trg", "source"
        size = pair.src_size
    else:
        flow, mask_from, mask_to, key, side = flow_ts, pair.src_mask, pair.trg_mask, "trg_to_src", "target"
        size = pair.trg_size
    if flow is None:
        raise DataError(f"pair '{pair.pair_id}': no flow/{key}, which the {protocol.name} protocol scores")
    _size(size, flow, side, pair.pair_id)
    import torch

    from ..warp import warp_mask

    f = torch.from_numpy(np.nan_to_num(np.asarray(flow, dtype=np.float32), nan=-1e6)).unsqueeze(0)
    m = torch.from_numpy(np.asarray(mask_from, dtype=np.float32))[None, None]
    warped = warp_mask(m, f)[0, 0].numpy()
    return {"lt_acc": label_transfer_accuracy(warped, mask_to), "iou": mask_iou(warped, mask_to)}


SCORERS = {"keypoints": score_keypoints, "flow": score_flow, "mask": score_mask}


def score_pair(pair, flows: tuple[np.ndarray | None, np.ndarray | None], protocol: Protocol, transfer=None) -> dict[str, Any]:
    """The per-pair figures of ``pair`` under ``protocol`` (dispatch on the protocol's task).

    ``transfer``: a model's own keypoint transfer (:func:`score_keypoints`), keypoint protocols only.
    """
    if protocol.task == "keypoints":
        return score_keypoints(pair, flows[0], flows[1], protocol, transfer)
    return SCORERS[protocol.task](pair, flows[0], flows[1], protocol)


def score_propagation(clip, source, protocol: Protocol) -> dict[str, Any]:
    """Carry the first frame's keypoints through ``clip`` with ``source``'s flows and measure every later frame.

    ``protocol.propagation`` picks the frame pairs (:func:`semcorr.propagate.propagate`);
    each frame ``t ≥ 1`` is measured against its own ground truth with ``L``
    from that frame (``protocol.threshold``). A joint is scored where it is
    annotated in both the first frame and frame ``t``.
    """
    from ..propagate import propagate

    if protocol.threshold == "bbox":
        raise DataError(f"clip '{clip.pair_id}' has no object box for the bbox threshold; use kps-diag, kps or img")
    size = clip.size

    def flow_between(a: int, b: int) -> np.ndarray:
        nonlocal size
        flow = source.flows(clip.frame_pair(a, b))[0]
        if flow is None:
            raise DataError(f"clip '{clip.pair_id}': no flow/src_to_trg for frames {a + 1} → {b + 1}")
        size = _size(size, flow, "source", f"{clip.pair_id}:{a + 1}")
        return flow

    first = clip.keypoints[0]
    pred = propagate(first, len(clip), flow_between, protocol.propagation)
    frames = []
    for t in range(1, len(clip)):
        gt = clip.keypoints[t]
        valid = np.isfinite(first).all(axis=1) & np.isfinite(gt).all(axis=1)
        errors = keypoint_errors(pred[t], gt, valid)
        length = threshold_length(protocol.threshold, size=size, kps=np.where(np.isfinite(gt), gt, np.nan))
        frames.append({"t": t, "L": float(length), "errors": _errors_json(errors), "n": int((~np.isnan(errors)).sum())})
    return {"frames": frames, "n": sum(f["n"] for f in frames)}


def score_coseg(pair, masks: tuple[np.ndarray | None, np.ndarray | None], protocol: Protocol) -> dict[str, Any]:
    """IoU of each image's co-segmentation mask ``(H, W)`` (foreground above :data:`semcorr.coseg.THRESHOLD`) with its ground truth."""
    from ..coseg import THRESHOLD

    out = {}
    for side, pred, gt, size in (("src", masks[0], pair.src_mask, pair.src_size), ("trg", masks[1], pair.trg_mask, pair.trg_size)):
        if pred is None:
            raise DataError(f"pair '{pair.pair_id}': no mask/{side}, which the {protocol.name} protocol scores")
        pred = np.asarray(pred)
        if pred.shape != tuple(size):
            raise DataError(f"pair '{pair.pair_id}': mask/{side} is {pred.shape[1]}x{pred.shape[0]} but the image is {size[1]}x{size[0]}")
        out[f"iou_{side}"] = mask_iou(pred > THRESHOLD, gt)
    return out


def score_item(item, source, protocol: Protocol) -> dict[str, Any]:
    """The figures of one dataset item (a pair, or a clip for propagation) with flows (or masks) from ``source``."""
    if protocol.task == "propagation":
        return score_propagation(item, source, protocol)
    if protocol.task == "coseg":
        return score_coseg(item, source.coseg(item), protocol)
    outputs = getattr(source, "outputs", None)
    st, ts, transfer = outputs(item, flows=protocol.task != "keypoints") if outputs else (*source.flows(item), None)
    return score_pair(item, (st, ts), protocol, transfer)


__all__ = [
    "MISSING_ERROR",
    "sample_flow",
    "clamp_points",
    "rescale_points",
    "score_keypoints",
    "score_flow",
    "score_mask",
    "score_pair",
    "score_propagation",
    "score_coseg",
    "score_item",
    "dense_alphas",
]
