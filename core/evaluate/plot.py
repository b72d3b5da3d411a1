"""PCK-against-α curves (α from 0.01 to 0.30) drawn with PIL, so no plotting library is needed."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..errors import UsageError, param
from ..files import atomic_write_bytes
from ..metrics import CURVE_ALPHAS, mean_over_pairs, pooled_over_keypoints
from .engine import EvaluationRun
from .export import run_label
from .summary import dense_rates, group_records, keypoint_counts

PALETTE = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75), (227, 119, 194),
    (127, 127, 127), (188, 189, 34), (23, 190, 207), (57, 59, 121), (173, 73, 74), (99, 121, 57), (140, 109, 49),
    (123, 65, 115), (82, 84, 163), (206, 109, 189), (231, 186, 82), (107, 174, 214), (116, 196, 118),
]  # fmt: skip
MAX_GROUP_CURVES = len(PALETTE)


def _keypoint_curve(records: list[dict], average: str) -> list[float]:
    c, n = keypoint_counts(records, CURVE_ALPHAS)
    values = mean_over_pairs(c, n) if average == "pair" else pooled_over_keypoints(c, n)
    return [float(v) * 100 for v in values]


def run_curves(run: EvaluationRun) -> dict[str, list[float]]:
    """``{label: PCK % at each α of CURVE_ALPHAS}``: the whole run first, then each category/subset."""
    p = run.protocol
    records = run.records
    if p.task == "propagation":
        from .summary import frame_records

        records = frame_records(records)
    if p.task in ("keypoints", "propagation"):
        curve = lambda rs: _keypoint_curve(rs, "pair" if p.average == "pair" else "keypoint")  # noqa: E731
    elif p.task == "flow":
        curve = lambda rs: [float(v) * 100 for v in dense_rates(rs, ("src_to_trg", "trg_to_src"), CURVE_ALPHAS)]  # noqa: E731
    else:
        return {}
    out = {"all": curve(records)} if records else {}
    groups = group_records(records, lambda r: r["category"])
    if 1 < len(groups) <= MAX_GROUP_CURVES:
        out.update({g: curve(rs) for g, rs in sorted(groups.items())})
    return out


def draw_curves(curves: dict[str, Sequence[float]], alphas: Sequence[float] = CURVE_ALPHAS, title: str = "", size: tuple[int, int] = (900, 600)) -> Image.Image:
    """An RGB image of PCK (%) against α, one polyline per entry of ``curves`` (``"all"`` drawn thick black)."""
    w, h = size
    left, right, top, bottom = 70, 190, 40, 60
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=14)
    x0, x1, y0, y1 = left, w - right, h - bottom, top
    a_min, a_max = 0.0, max(alphas)

    def px(a: float, v: float) -> tuple[float, float]:
        return x0 + (a - a_min) / (a_max - a_min) * (x1 - x0), y0 - v / 100.0 * (y0 - y1)

    for v in range(0, 101, 20):
        y = px(0, v)[1]
        d.line([(x0, y), (x1, y)], fill=(225, 225, 225))
        d.text((x0 - 8, y), f"{v}", fill="black", font=font, anchor="rm")
    for a in np.arange(0.05, a_max + 1e-9, 0.05):
        x = px(float(a), 0)[0]
        d.line([(x, y0), (x, y1)], fill=(225, 225, 225))
        d.text((x, y0 + 8), f"{a:.2f}", fill="black", font=font, anchor="mt")
    d.rectangle([x0, y1, x1, y0], outline="black")
    d.text(((x0 + x1) / 2, h - 18), "alpha (threshold = alpha · L)", fill="black", font=font, anchor="mm")
    d.text((14, (y0 + y1) / 2), "PCK %", fill="black", font=font, anchor="lm")
    if title:
        d.text(((x0 + x1) / 2, 18), title, fill="black", font=font, anchor="mm")
    for k, (label, values) in enumerate(curves.items()):
        color = (0, 0, 0) if label == "all" else PALETTE[k % len(PALETTE)]
        pts = [px(a, v) for a, v in zip(alphas, values) if v is not None and np.isfinite(v)]
        if len(pts) > 1:
            d.line(pts, fill=color, width=3 if label == "all" else 2)
        ly = top + 4 + 20 * k
        d.line([(x1 + 12, ly + 7), (x1 + 36, ly + 7)], fill=color, width=3)
        d.text((x1 + 42, ly), label[:18], fill="black", font=font)
    return img


def plot_png(run: EvaluationRun) -> bytes:
    """The run's PCK curves drawn as a PNG image."""
    p = run.protocol
    curves = run_curves(run)
    if not curves:
        raise UsageError(f"{param('plot')} draws PCK curves; the {p.name} protocol has none (it reports LT-ACC and IoU)")
    title = f"{run_label(run.header)} · {p.name} ({p.threshold}, {p.direction}, {len(run.records)} pairs)"
    buf = io.BytesIO()
    draw_curves(curves, title=title).save(buf, format="PNG")
    return buf.getvalue()


def write_plot(path: str | Path, run: EvaluationRun) -> None:
    """:func:`plot_png` written atomically into a PNG file."""
    atomic_write_bytes(path, plot_png(run))


__all__ = ["run_curves", "draw_curves", "plot_png", "write_plot"]
