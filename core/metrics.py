"""Correspondence metrics as pure numpy functions.

Keypoints (PCK)
    A transferred keypoint is correct at ``α`` when its distance to the ground
    truth is ``≤ α · L`` (the comparison of the published code). ``L`` is
    chosen explicitly (:func:`threshold_length`) in the image where the error
    is measured:

    * ``img``  — ``max(H, W)`` of that image;
    * ``bbox`` — ``max(w, h)`` of that image's object box;
    * ``kps``  — ``max(w, h)`` of the tight box around that image's keypoints;
    * ``kps-diag`` — ``0.6 · √(w² + h²)`` of that box (the person box of the
      JHMDB keypoint-propagation evaluation, TimeCycle/UVC ``eval_pck.py``).

    Keypoints whose ground truth (or query) is missing — NaN, or ``-1``
    padding turned into NaN by the readers — are *ignored*: they count neither
    as correct nor in the total. A visible keypoint for which the method gave
    no position (transferred from outside the flow's frame) counts as wrong
    (error ``+inf``).

    Per-pair PCK averaged over pairs (:func:`mean_over_pairs`, the papers'
    usual figure) and PCK pooled over all keypoints
    (:func:`pooled_over_keypoints`, SFNet's) are both provided.

Dense flow (TSS)
    :func:`dense_correct` counts the foreground pixels whose flow end point is
    within ``α · L`` of the ground truth's.

Masks (Caltech-101)
    :func:`label_transfer_accuracy` (LT-ACC) and :func:`mask_iou`.

Shapes: keypoints ``(N, 2)``, flows ``(H, W, 2)``, masks ``(H, W)``, per-pair
tables ``(P, A)`` for ``P`` pairs and ``A`` thresholds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .pck_names import DEFAULT_ALPHAS, THRESHOLD_KINDS
#: Factor of the box diagonal in the ``kps-diag`` reference length.
DIAGONAL_FACTOR = 0.6
#: The α grid of PCK curves (0.01 … 0.30).
CURVE_ALPHAS = tuple(round(0.01 * i, 2) for i in range(1, 31))

#: SPair-71k difficulty factors and the names of their levels (the benchmark paper's Table 4).
SPAIR_FACTORS: dict[str, tuple[str, ...]] = {
    "viewpoint_variation": ("easy", "medium", "hard"),
    "scale_variation": ("easy", "medium", "hard"),
    "truncation": ("none", "src", "tgt", "both"),
    "occlusion": ("none", "src", "tgt", "both"),
}


def _points(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"{name} must be (N, 2), got {a.shape}")
    return a


# ----------------------------------------------------------------------------- keypoints


def keypoint_errors(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Euclidean errors ``(N,)`` between predicted and true points ``(N, 2)``.

    NaN where the point is not evaluated (``valid`` false; by default: the
    ground truth is not finite); ``+inf`` where it is evaluated but the
    prediction is missing (not finite).
    """
    pred, gt = _points(pred, "pred"), _points(gt, "gt")
    if pred.shape != gt.shape:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} differ")
    ok = np.isfinite(gt).all(axis=1) if valid is None else np.asarray(valid, dtype=bool) & np.isfinite(gt).all(axis=1)
    with np.errstate(invalid="ignore"):
        err = np.sqrt(((pred - gt) ** 2).sum(axis=1))
    err = np.where(np.isfinite(pred).all(axis=1), err, np.inf)
    return np.where(ok, err, np.nan)


def image_side(size: Sequence[int]) -> float:
    """``max(H, W)`` of an image of ``size = (H, W)``."""
    h, w = size
    return float(max(h, w))


def bbox_side(bbox: Sequence[float]) -> float:
    """``max(x2 − x1, y2 − y1)`` of a box ``(4,)``."""
    x1, y1, x2, y2 = (float(v) for v in np.asarray(bbox, dtype=np.float64).reshape(4))
    return max(x2 - x1, y2 - y1)


def keypoint_box_side(points: np.ndarray) -> float:
    """Longest side of the tight box around the finite rows of ``(N, 2)``; NaN when none."""
    pts = _points(points, "points")
    pts = pts[np.isfinite(pts).all(axis=1)]
    if len(pts) == 0:
        return float("nan")
    return float((pts.max(axis=0) - pts.min(axis=0)).max())


def keypoint_box_diagonal(points: np.ndarray, factor: float = DIAGONAL_FACTOR) -> float:
    """``factor · √(w² + h²)`` of the tight box around the finite rows of ``(N, 2)``; NaN when none."""
    pts = _points(points, "points")
    pts = pts[np.isfinite(pts).all(axis=1)]
    if len(pts) == 0:
        return float("nan")
    return float(factor * np.linalg.norm(pts.max(axis=0) - pts.min(axis=0)))


def threshold_length(
    kind: str,
    size: Sequence[int] | None = None,
    bbox: Sequence[float] | None = None,
    kps: np.ndarray | None = None,
) -> float:
    """The PCK reference length ``L`` of ``kind`` (``img``, ``bbox``, ``kps`` or ``kps-diag``) for one image."""
    if kind == "img":
        if size is None:
            raise ValueError("the 'img' threshold needs the image size")
        return image_side(size)
    if kind == "bbox":
        if bbox is None:
            raise ValueError("the 'bbox' threshold needs an object box")
        return bbox_side(bbox)
    if kind == "kps":
        if kps is None:
            raise ValueError("the 'kps' threshold needs the keypoints")
        return keypoint_box_side(kps)
    if kind == "kps-diag":
        if kps is None:
            raise ValueError("the 'kps-diag' threshold needs the keypoints")
        return keypoint_box_diagonal(kps)
    raise ValueError(f"unknown threshold kind {kind!r}; choose one of {', '.join(THRESHOLD_KINDS)}")


def correct_keypoints(errors: np.ndarray, length: float, alphas: Sequence[float]) -> tuple[np.ndarray, int]:
    """Correct counts ``(A,)`` (``error ≤ α·L``) and the number of evaluated points (non-NaN errors)."""
    err = np.asarray(errors, dtype=np.float64).reshape(-1)
    err = err[~np.isnan(err)]
    thr = np.asarray(alphas, dtype=np.float64) * float(length)
    return (err[None, :] <= thr[:, None]).sum(axis=1).astype(np.int64), int(err.size)


def pck(errors: np.ndarray, length: float, alphas: Sequence[float] = DEFAULT_ALPHAS) -> np.ndarray:
    """PCK ``(A,)`` of one pair, in [0, 1]; NaN when no keypoint is evaluated."""
    correct, n = correct_keypoints(errors, length, alphas)
    return correct / n if n else np.full(len(correct), np.nan)


def _table(correct: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(correct, dtype=np.float64)
    if c.ndim == 1:
        c = c[None, :]
    n = np.asarray(counts, dtype=np.float64).reshape(-1)
    if c.shape[0] != n.shape[0]:
        raise ValueError(f"correct {c.shape} and counts {n.shape} disagree on the number of pairs")
    return c, n


def mean_over_pairs(correct: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mean of per-pair PCK ``(A,)`` over the pairs with at least one evaluated point.

    correct ``(P, A)`` counts, counts ``(P,)`` evaluated points per pair. NaN when no pair counts.
    """
    c, n = _table(correct, counts)
    keep = n > 0
    if not keep.any():
        return np.full(c.shape[1], np.nan)
    return (c[keep] / n[keep, None]).mean(axis=0)


def pooled_over_keypoints(correct: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Total correct / total evaluated ``(A,)`` over all pairs (every keypoint weighs the same)."""
    c, n = _table(correct, counts)
    total = n.sum()
    return c.sum(axis=0) / total if total > 0 else np.full(c.shape[1], np.nan)


def group_mean(values: np.ndarray, groups: Sequence) -> dict:
    """Mean ``(A,)`` of the rows of ``values`` ``(P, A)`` for each group label (NaN rows skipped)."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[:, None]
    out = {}
    labels = list(groups)
    for g in dict.fromkeys(labels):
        rows = v[[i for i, lab in enumerate(labels) if lab == g]]
        rows = rows[~np.isnan(rows).all(axis=1)]
        out[g] = rows.mean(axis=0) if len(rows) else np.full(v.shape[1], np.nan)
    return out


def spair_level(factor: str, value: int) -> str:
    """The name of level ``value`` of an SPair-71k factor (e.g. truncation 2 → ``tgt``)."""
    names = SPAIR_FACTORS[factor]
    if not 0 <= int(value) < len(names):
        raise ValueError(f"{factor} level {value} is outside 0..{len(names) - 1}")
    return names[int(value)]


# ----------------------------------------------------------------------------- dense flow


def dense_errors(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """End-point errors ``(H, W)`` between flows ``(H, W, 2)``; NaN where the ground truth is unknown, inf where the prediction is."""
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[2] != 2:
        raise ValueError(f"flows must both be (H, W, 2), got {pred.shape} and {gt.shape}")
    return keypoint_errors(pred.reshape(-1, 2), gt.reshape(-1, 2)).reshape(gt.shape[:2])


def dense_correct(
    pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, length: float, alphas: Sequence[float]
) -> tuple[np.ndarray, int]:
    """Correct pixel counts ``(A,)`` and the number of evaluated pixels (in ``mask`` with known ground truth)."""
    err = dense_errors(pred, gt)
    m = np.asarray(mask, dtype=bool)
    if m.shape != err.shape:
        raise ValueError(f"mask {m.shape} does not match the flow {err.shape}")
    return correct_keypoints(err[m], length, alphas)


# ----------------------------------------------------------------------------- masks


def _masks(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, g = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    if p.shape != g.shape or p.ndim != 2:
        raise ValueError(f"masks must both be (H, W), got {p.shape} and {g.shape}")
    return p, g


def label_transfer_accuracy(pred: np.ndarray, gt: np.ndarray) -> float:
    """LT-ACC: fraction of pixels whose transferred label (foreground/background) is right."""
    p, g = _masks(pred, gt)
    return float((p == g).mean())


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Intersection over union of two foreground masks; 1 when both are empty."""
    p, g = _masks(pred, gt)
    union = (p | g).sum()
    return float((p & g).sum() / union) if union else 1.0


__all__ = [
    "DEFAULT_ALPHAS",
    "THRESHOLD_KINDS",
    "CURVE_ALPHAS",
    "SPAIR_FACTORS",
    "keypoint_errors",
    "image_side",
    "bbox_side",
    "keypoint_box_side",
    "keypoint_box_diagonal",
    "threshold_length",
    "correct_keypoints",
    "pck",
    "mean_over_pairs",
    "pooled_over_keypoints",
    "group_mean",
    "spair_level",
    "dense_errors",
    "dense_correct",
    "label_transfer_accuracy",
    "mask_iou",
]
