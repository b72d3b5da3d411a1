"""MMNet's per-scale matches for one source point (the paper's figure 3).

:func:`per_scale_heatmaps` gives, for a source pixel, the matching
probabilities over the target image at every level (coarsest to finest
refinement, each ``S_l = S̃_l + U(S_{l+1})``), computed from correlation rows
so even the stride-4 level costs one row. :func:`draw_per_scale` lays them out
side by side: the source image with the point, then one target panel per
level with the heatmap blended in and the level's best match marked.
:func:`per_scale_figure` does both from PIL images, and :func:`mmnet_panels`
gives the same heatmaps as ``semcorr show`` panels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from ..geometry import cell_centers, normalized_to_pixels, pixels_to_normalized
from ..images import image_to_tensor
from .mmnet import MMNet


@dataclass
class ScaleHeatmap:
    """One level's view of a source point.

    * ``level`` / ``stride``: which level (0 finest) and its backbone stride;
    * ``prob``: ``(h, w)`` softmax of the level's scores over the target grid;
    * ``best``: pixel ``(x, y)`` of the most probable target cell in the target image.
    """

    level: int
    stride: int
    prob: torch.Tensor
    best: tuple[float, float]


@torch.no_grad()
def scale_probabilities(
    model: MMNet, maps_a: list[torch.Tensor], maps_b: list[torch.Tensor], point_norm: tuple[float, float]
) -> list[torch.Tensor]:
    """Softmax over the target grid of each level's scores at one source point, finest level first.

    maps_a / maps_b: the enhanced maps of one pair (``model.encode``), each
    ``(1, 21, h_l, w_l)``; ``point_norm``: normalised source ``(x, y)``
    (:mod:`semcorr.geometry`). → list of ``(hB_l, wB_l)``.
    """
    coarse = model.volumes(maps_a, maps_b, stop_level=1) if len(maps_a) > 1 else [None]
    out = []
    for level, fa in enumerate(maps_a):
        h, w = fa.shape[-2:]
        cell = torch.tensor([[[(point_norm[0] + 1) / 2 * (w - 1), (point_norm[1] + 1) / 2 * (h - 1)]]], dtype=fa.dtype, device=fa.device)
        rows = model.level_rows(maps_a, maps_b, coarse, level, "src_to_trg", cell)[0, 0]
        out.append(torch.softmax(rows.reshape(-1), 0).view_as(rows))
    return out


def mmnet_panels(net: MMNet, feats_src: dict, feats_trg: dict, point_norm: tuple[float, float]) -> list[tuple[str, np.ndarray]]:
    """``semcorr show`` panels: one ``(title, heatmap (hB_l, wB_l))`` per level, coarsest first.

    The signature of :data:`semcorr.pipeline.heatmaps.PANEL_BUILDERS` entries: backbone
    features of one pair and a normalised source point.
    """
    probs = scale_probabilities(net, net.encode(feats_src), net.encode(feats_trg), point_norm)
    return [
        (f"stride {net.strides[level]}", probs[level].float().cpu().numpy()) for level in reversed(range(len(probs)))
    ]


@torch.no_grad()
def per_scale_heatmaps(
    model: MMNet, img_src: torch.Tensor, img_trg: torch.Tensor, point: tuple[float, float]
) -> list[ScaleHeatmap]:
    """Per-level matching probabilities of one source pixel, finest level first.

    img_src / img_trg: ImageNet-normalised ``(1, 3, H, W)``; ``point``: pixel
    ``(x, y)`` in ``img_src``. → one :class:`ScaleHeatmap` per level.
    """
    if img_src.dim() != 4 or img_src.shape[0] != 1 or img_trg.dim() != 4 or img_trg.shape[0] != 1:
        raise ValueError("per_scale_heatmaps takes one pair: (1, 3, H, W) images")
    maps_a, maps_b = model.encode_images(img_src, img_trg)
    src_size, trg_size = tuple(img_src.shape[-2:]), tuple(img_trg.shape[-2:])
    point_norm = tuple(pixels_to_normalized(torch.tensor(point, dtype=torch.float64), src_size).tolist())
    out = []
    for level, prob in enumerate(scale_probabilities(model, maps_a, maps_b, point_norm)):
        h, w = prob.shape
        idx = int(prob.argmax())
        best = torch.stack([cell_centers(w)[idx % w], cell_centers(h)[idx // w]])
        bx, by = normalized_to_pixels(best, trg_size).tolist()
        out.append(ScaleHeatmap(level, model.strides[level], prob.cpu(), (bx, by)))
    return out


def heat_colours(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] ``(H, W)`` → RGB ``(H, W, 3)`` uint8 on a blue–cyan–yellow–red ramp."""
    stops = np.array([[0, 0, 128], [0, 160, 255], [255, 230, 0], [220, 0, 0]], dtype=np.float64)
    pos = np.clip(values, 0, 1) * (len(stops) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(stops) - 2)
    frac = (pos - lo)[..., None]
    return (stops[lo] * (1 - frac) + stops[lo + 1] * frac).astype(np.uint8)


def _overlay(image: Image.Image, prob: torch.Tensor, alpha: float = 0.55) -> Image.Image:
    w, h = image.size
    heat = F.interpolate(prob[None, None].float(), size=(h, w), mode="bilinear", align_corners=True)[0, 0]
    heat = (heat / heat.max().clamp_min(1e-12)).numpy()
    coloured = Image.fromarray(heat_colours(heat), mode="RGB")
    return Image.blend(image.convert("RGB"), coloured, alpha)


def _marker(draw: ImageDraw.ImageDraw, xy: tuple[float, float], colour, r: int = 5) -> None:
    x, y = xy
    draw.ellipse([x - r, y - r, x + r, y + r], outline=(255, 255, 255), width=3)
    draw.ellipse([x - r + 1, y - r + 1, x + r - 1, y + r - 1], outline=colour, width=2)


def draw_per_scale(
    src_image: Image.Image,
    trg_image: Image.Image,
    point: tuple[float, float],
    heatmaps: list[ScaleHeatmap],
    gap: int = 6,
    caption: int = 16,
) -> Image.Image:
    """Side-by-side figure: source with ``point``, then the target per level, coarsest first.

    ``point`` and every ``heatmap.best`` are pixels of ``src_image`` /
    ``trg_image`` as given (resize them together with the images).
    """
    panels: list[tuple[Image.Image, str]] = []
    src = src_image.convert("RGB").copy()
    _marker(ImageDraw.Draw(src), point, (0, 255, 0))
    panels.append((src, "source"))
    for hm in sorted(heatmaps, key=lambda h: -h.level):
        panel = _overlay(trg_image, hm.prob)
        _marker(ImageDraw.Draw(panel), hm.best, (0, 255, 0))
        panels.append((panel, f"stride {hm.stride} (level {hm.level})"))
    width = sum(p.width for p, _ in panels) + gap * (len(panels) - 1)
    height = max(p.height for p, _ in panels) + caption
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    x = 0
    for panel, text in panels:
        canvas.paste(panel, (x, caption))
        draw.text((x + 2, 2), text, fill=(0, 0, 0))
        x += panel.width + gap
    return canvas


def per_scale_figure(
    model: MMNet,
    src_image: Image.Image,
    trg_image: Image.Image,
    point: tuple[float, float],
    size: int | tuple[int, int] | None = None,
) -> tuple[Image.Image, list[ScaleHeatmap]]:
    """Figure 3 for PIL images: ``point`` in ``src_image`` pixels; images resized to ``size``
    (default ``model.input_size``) for the network, drawn at their own sizes.

    Returns ``(figure, heatmaps)`` with ``heatmaps[l].best`` in ``trg_image`` pixels.
    """
    size = model.input_size if size is None else size
    device = next(model.parameters()).device
    t_src, t_trg = image_to_tensor(src_image, size).to(device), image_to_tensor(trg_image, size).to(device)
    (hs, ws), (ht, wt) = t_src.shape[-2:], t_trg.shape[-2:]
    sx, sy = (ws - 1) / max(src_image.width - 1, 1), (hs - 1) / max(src_image.height - 1, 1)
    heatmaps = per_scale_heatmaps(model, t_src, t_trg, (point[0] * sx, point[1] * sy))
    bx, by = (trg_image.width - 1) / max(wt - 1, 1), (trg_image.height - 1) / max(ht - 1, 1)
    for hm in heatmaps:
        hm.best = (hm.best[0] * bx, hm.best[1] * by)
    return draw_per_scale(src_image, trg_image, point, heatmaps), heatmaps
