"""From per-pair records to the figures of a results table (all in percent).

Keypoint protocols::

    {"task": "keypoints", "alphas": [...], "headline": {...},
     "overall":    {"pck_pair": {α: %}, "pck_keypoint": {α: %}, "n_pairs": P, "n_keypoints": K},
     "categories": {category: same fields},
     "category_mean": {"pck_pair": {α: %}, "pck_keypoint": {α: %}},   # unweighted mean over categories
     "breakdown":  {factor: {level: {"pck_pair": …, "n_pairs": …}}},  # SPair-71k Table 4
     "breakdown_controlled": {factor: {level: same fields}},          # SPair-71k Table 5
     "curve": {"alphas": [...], "pck_pair": [...], "pck_keypoint": [...]}}

``pck_pair`` is the mean of per-pair PCK (pairs with no evaluated keypoint
are left out); ``pck_keypoint`` pools every keypoint of the group.

Propagation (JHMDB): every scored frame is one "pair" of the keypoint
figures, grouped by action (``categories``), plus ``pck_joint``: each
keypoint index's PCK pooled over all frames, averaged over the indices
(``joints`` holds the per-index figures); ``n_clips`` counts the clips.

Co-segmentation (TSS): IoU per subset over its images (two per pair, also
per side), the overall mean over images, and the mean over subsets (headline).

Dense (TSS): per subset, per direction and both directions together
(every flow map one sample), then the mean over subsets. Masks: LT-ACC and IoU
per class and over all pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import UsageError
from ..metrics import CURVE_ALPHAS, SPAIR_FACTORS, correct_keypoints, mean_over_pairs, pooled_over_keypoints, spair_level
from ..protocols import Protocol


def alpha_key(alpha: float) -> str:
    """How an α is written as a key: ``0.1`` → ``"0.1"``."""
    return f"{float(alpha):g}"


def _percent(values: np.ndarray, alphas: Sequence[float]) -> dict[str, float | None]:
    return {alpha_key(a): (None if np.isnan(v) else float(v) * 100.0) for a, v in zip(alphas, values)}


def keypoint_counts(records: list[dict[str, Any]], alphas: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Correct counts ``(P, A)`` and evaluated counts ``(P,)`` of keypoint records at ``alphas``."""
    correct = np.zeros((len(records), len(alphas)), dtype=np.int64)
    counts = np.zeros(len(records), dtype=np.int64)
    for i, r in enumerate(records):
        errors = np.array([np.nan if e is None else e for e in r["errors"]], dtype=np.float64)
        correct[i], counts[i] = correct_keypoints(errors, r["L"], alphas)
    return correct, counts


def _keypoint_group(records: list[dict[str, Any]], alphas: Sequence[float]) -> dict[str, Any]:
    correct, counts = keypoint_counts(records, alphas)
    return {
        "pck_pair": _percent(mean_over_pairs(correct, counts), alphas),
        "pck_keypoint": _percent(pooled_over_keypoints(correct, counts), alphas),
        "n_pairs": len(records),
        "n_keypoints": int(counts.sum()),
    }


def group_records(records: list[dict[str, Any]], key) -> dict[Any, list[dict[str, Any]]]:
    out: dict[Any, list[dict[str, Any]]] = {}
    for r in records:
        k = key(r)
        if k is not None:
            out.setdefault(k, []).append(r)
    return out


def _mean_of(groups: dict[str, dict[str, Any]], field: str, alphas: Sequence[float]) -> dict[str, float | None]:
    out = {}
    for a in alphas:
        vals = [g[field][alpha_key(a)] for g in groups.values() if g[field][alpha_key(a)] is not None]
        out[alpha_key(a)] = float(np.mean(vals)) if vals else None
    return out


def spair_breakdown(records: list[dict[str, Any]], alphas: Sequence[float]) -> dict[str, dict[str, Any]]:
    """PCK by level of each SPair-71k difficulty factor present in the records' ``meta``."""
    out: dict[str, dict[str, Any]] = {}
    for factor in SPAIR_FACTORS:
        groups = group_records(records, lambda r: r.get("meta", {}).get(factor))
        if groups:
            out[factor] = {
                spair_level(factor, level): _keypoint_group(groups[level], alphas) for level in sorted(groups)
            }
    return out


def spair_controlled_breakdown(records: list[dict[str, Any]], alphas: Sequence[float]) -> dict[str, dict[str, Any]]:
    """PCK by level of each SPair-71k factor *alone* (the benchmark paper's Table 5).

    For factor ``F`` at level ``l`` only the pairs with ``F = l`` whose other
    factors are all at their first level (view-point and scale ``easy``,
    truncation and occlusion ``none``) are kept; pairs lacking a factor in
    their ``meta`` are left out. Levels without pairs are absent.
    """
    known = [r for r in records if all(r.get("meta", {}).get(f) is not None for f in SPAIR_FACTORS)]
    out: dict[str, dict[str, Any]] = {}
    for factor in SPAIR_FACTORS:
        others = [f for f in SPAIR_FACTORS if f != factor]
        held = [r for r in known if all(int(r["meta"][f]) == 0 for f in others)]
        groups = group_records(held, lambda r: int(r["meta"][factor]))
        if groups:
            out[factor] = {spair_level(factor, level): _keypoint_group(groups[level], alphas) for level in sorted(groups)}
    return out


def headline(summary_block: dict[str, Any], protocol: Protocol, alphas: Sequence[float]) -> dict[str, Any]:
    """The figure a paper's table shows: the protocol's α (or the first one) with its average."""
    a = protocol.headline_alpha if protocol.headline_alpha in alphas else alphas[0]
    field = {"pair": "pck_pair", "keypoint": "pck_keypoint", "joint": "pck_joint"}[protocol.average]
    return {"alpha": a, "average": protocol.average, "value": summary_block[field][alpha_key(a)]}


def frame_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Propagation records (one per clip) → one keypoint record per scored frame (category = the clip's)."""
    return [
        {"category": r["category"], "pair_id": f"{r['pair_id']}:{f['t']}", "L": f["L"], "errors": f["errors"], "n": f["n"], "meta": {}}
        for r in records
        for f in r["frames"]
    ]


def joint_pck(records: list[dict[str, Any]], alphas: Sequence[float]) -> tuple[dict[str, float | None], list[dict[str, float | None]]]:
    """Mean over keypoint indices of each index's pooled PCK, and the per-index figures (``(A,)`` in %)."""
    if not records:
        return _percent(np.full(len(alphas), np.nan), alphas), []
    n_joints = max(len(r["errors"]) for r in records)
    per_joint = []
    for j in range(n_joints):
        column = [{"L": r["L"], "errors": [r["errors"][j] if j < len(r["errors"]) else None]} for r in records]
        c, n = keypoint_counts(column, alphas)
        per_joint.append(pooled_over_keypoints(c, n))
    table = np.array(per_joint)  # (J, A)
    with np.errstate(invalid="ignore"):
        mean = np.array([np.nanmean(table[:, k]) if np.isfinite(table[:, k]).any() else np.nan for k in range(len(alphas))])
    return _percent(mean, alphas), [_percent(v, alphas) for v in per_joint]


def summarize_propagation(records: list[dict[str, Any]], protocol: Protocol, alphas: Sequence[float]) -> dict[str, Any]:
    frames = frame_records(records)
    out = summarize_keypoints(frames, protocol, alphas)
    out["task"] = "propagation"
    out["group_name"] = "action"
    out["overall"]["pck_joint"], per_joint = joint_pck(frames, alphas)
    out["overall"]["n_clips"] = len(records)
    out["joints"] = per_joint
    clips = group_records(records, lambda r: r["category"])
    for action, block in out["categories"].items():
        block["pck_joint"], _ = joint_pck([f for f in frames if f["category"] == action], alphas)
        block["n_clips"] = len(clips.get(action, []))
    out["category_mean"]["pck_joint"] = _mean_of(out["categories"], "pck_joint", alphas)
    out["headline"] = headline(out["overall"], protocol, alphas)
    return out


def summarize_keypoints(records: list[dict[str, Any]], protocol: Protocol, alphas: Sequence[float]) -> dict[str, Any]:
    cats = {c: _keypoint_group(rs, alphas) for c, rs in sorted(group_records(records, lambda r: r["category"]).items())}
    overall = _keypoint_group(records, alphas)
    curve_c, curve_n = keypoint_counts(records, CURVE_ALPHAS)
    out = {
        "task": "keypoints",
        "alphas": list(alphas),
        "overall": overall,
        "categories": cats,
        "category_mean": {"pck_pair": _mean_of(cats, "pck_pair", alphas), "pck_keypoint": _mean_of(cats, "pck_keypoint", alphas)},
        "headline": headline(overall, protocol, alphas) if protocol.average != "joint" else None,  # joint: set by the caller
        "curve": {
            "alphas": list(CURVE_ALPHAS),
            "pck_pair": [None if np.isnan(v) else float(v) * 100 for v in mean_over_pairs(curve_c, curve_n)],
            "pck_keypoint": [None if np.isnan(v) else float(v) * 100 for v in pooled_over_keypoints(curve_c, curve_n)],
        },
    }
    breakdown = spair_breakdown(records, alphas)
    if breakdown:
        out["breakdown"] = breakdown
        out["breakdown_controlled"] = spair_controlled_breakdown(records, alphas)
    return out


def dense_rates(records: list[dict[str, Any]], directions: Sequence[str], alphas: Sequence[float]) -> np.ndarray:
    """Mean over flow maps of the correct fraction ``(A,)``: one sample per (pair, direction)."""
    rows = []
    for r in records:
        idx = [r["alphas"].index(a) for a in _stored(r, alphas)]
        for d in directions:
            n = r[d]["n"]
            if n > 0:
                rows.append(np.asarray(r[d]["correct"], dtype=np.float64)[idx] / n)
    return np.mean(rows, axis=0) if rows else np.full(len(alphas), np.nan)


def _stored(record: dict[str, Any], alphas: Sequence[float]) -> list[float]:
    stored = [float(a) for a in record["alphas"]]
    out = []
    for a in alphas:
        match = [s for s in stored if abs(s - a) < 1e-9]
        if not match:
            raise UsageError(f"α = {a:g} was not stored in these dense results (stored: 0.01 … 0.30 and the protocol's)")
        out.append(match[0])
    return out


def _dense_group(records: list[dict[str, Any]], alphas: Sequence[float]) -> dict[str, Any]:
    both = ("src_to_trg", "trg_to_src")
    return {
        "pck": _percent(dense_rates(records, both, alphas), alphas),
        "src_to_trg": _percent(dense_rates(records, ("src_to_trg",), alphas), alphas),
        "trg_to_src": _percent(dense_rates(records, ("trg_to_src",), alphas), alphas),
        "n_pairs": len(records),
    }


def summarize_flow(records: list[dict[str, Any]], protocol: Protocol, alphas: Sequence[float]) -> dict[str, Any]:
    subsets = {c: _dense_group(rs, alphas) for c, rs in sorted(group_records(records, lambda r: r["category"]).items())}
    overall = _dense_group(records, alphas)
    curve = dense_rates(records, ("src_to_trg", "trg_to_src"), CURVE_ALPHAS) if records else np.full(len(CURVE_ALPHAS), np.nan)
    average = {"pck": _mean_of(subsets, "pck", alphas)}
    a = protocol.headline_alpha if protocol.headline_alpha in alphas else alphas[0]
    return {
        "task": "flow",
        "alphas": list(alphas),
        "subsets": subsets,
        "average": average,
        "overall": overall,
        "headline": {"alpha": a, "average": "subset", "value": average["pck"][alpha_key(a)]},
        "curve": {"alphas": list(CURVE_ALPHAS), "pck": [None if np.isnan(v) else float(v) * 100 for v in curve]},
    }


def _mask_group(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "lt_acc": float(np.mean([r["lt_acc"] for r in records])) * 100,
        "iou": float(np.mean([r["iou"] for r in records])) * 100,
        "n_pairs": len(records),
    }


def summarize_mask(records: list[dict[str, Any]], protocol: Protocol) -> dict[str, Any]:
    cats = {c: _mask_group(rs) for c, rs in sorted(group_records(records, lambda r: r["category"]).items())}
    overall = _mask_group(records) if records else {"lt_acc": None, "iou": None, "n_pairs": 0}
    return {"task": "mask", "overall": overall, "categories": cats, "headline": {"metric": "lt_acc", "value": overall["lt_acc"]}}


def _coseg_group(records: list[dict[str, Any]]) -> dict[str, Any]:
    src = [r["iou_src"] for r in records]
    trg = [r["iou_trg"] for r in records]
    mean = lambda v: float(np.mean(v)) * 100 if v else None  # noqa: E731
    return {"iou": mean(src + trg), "iou_src": mean(src), "iou_trg": mean(trg), "n_pairs": len(records), "n_images": 2 * len(records)}


def summarize_coseg(records: list[dict[str, Any]], protocol: Protocol) -> dict[str, Any]:
    subsets = {c: _coseg_group(rs) for c, rs in sorted(group_records(records, lambda r: r["category"]).items())}
    vals = [g["iou"] for g in subsets.values() if g["iou"] is not None]
    average = float(np.mean(vals)) if vals else None
    return {
        "task": "coseg",
        "subsets": subsets,
        "overall": _coseg_group(records),
        "average": {"iou": average},
        "headline": {"metric": "iou", "average": "subset", "value": average},
    }


def summarize(records: list[dict[str, Any]], protocol: Protocol, alphas: Sequence[float] | None = None) -> dict[str, Any]:
    """Every figure of a run (see the module doc); ``alphas`` overrides the protocol's."""
    alphas = [float(a) for a in (alphas or protocol.alphas)]
    if protocol.task == "keypoints":
        return summarize_keypoints(records, protocol, alphas)
    if protocol.task == "propagation":
        return summarize_propagation(records, protocol, alphas)
    if protocol.task == "coseg":
        return summarize_coseg(records, protocol)
    if protocol.task == "flow":
        return summarize_flow(records, protocol, alphas)
    return summarize_mask(records, protocol)


__all__ = ["summarize", "frame_records", "joint_pck", "alpha_key", "keypoint_counts", "dense_rates", "group_records", "spair_breakdown", "spair_controlled_breakdown"]
