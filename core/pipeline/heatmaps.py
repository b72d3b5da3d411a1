"""The ``show`` stage: where a source point matches in the target, as heatmaps (DCCNet's figure 1).

The figure is built from panels: one ``(title, heatmap (hB, wB))`` per score
map, drawn over the target image by :func:`semcorr.viz.heatmap_figure`.
:data:`PANEL_BUILDERS` maps a model name to the function that makes its
panels, so another model (e.g. a per-scale view) only registers a builder;
:func:`show_point` runs a model on two images or on a features record and
returns the figure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..backbones import DEFAULT_BACKBONE
from ..ncnet_consensus import softmax_over_target
from ..errors import DataError, UsageError, param
from ..images import image_to_tensor, load_image
from ..io.records import PairRecord
from ..io.stream import iter_records
from ..models import build_model
from ..viz import heatmap_figure
from .features import record_backbone, record_features
from .fill_layers import LayerFiller

#: A panel: its title and a heatmap ``(hB, wB)`` over the target's feature grid.
Panel = tuple[str, np.ndarray]


# ----------------------------------------------------------------------------- sampling


def point_to_normalized(point: tuple[float, float], size: tuple[int, int]) -> tuple[float, float]:
    """Pixel ``(x, y)`` in an image of ``size = (H, W)`` → normalised ``(x, y)`` (align_corners)."""
    h, w = size
    return (2.0 * point[0] / max(w - 1, 1) - 1.0, 2.0 * point[1] / max(h - 1, 1) - 1.0)


def sample_at_point(maps: torch.Tensor, point_norm: tuple[float, float]) -> torch.Tensor:
    """Bilinear value of per-source-cell maps at a normalised source point.

    maps ``(1, C, hA, wA)`` → ``(C,)`` tensor; cells at ``linspace(-1, 1, n)``.
    """
    grid = torch.tensor([[[list(point_norm)]]], dtype=maps.dtype, device=maps.device)
    return F.grid_sample(maps, grid, mode="bilinear", padding_mode="border", align_corners=True)[0, :, 0, 0]


def target_heatmap(scores: torch.Tensor, point_norm: tuple[float, float]) -> np.ndarray:
    """A source point's scores over the target: ``(1, hA, wA, hB, wB)`` → ``(hB, wB)`` numpy.

    The maps of the source cells around the point are interpolated bilinearly.
    """
    _, ha, wa, hb, wb = scores.shape
    maps = scores.reshape(1, ha, wa, hb * wb).permute(0, 3, 1, 2)
    return sample_at_point(maps, point_norm).reshape(hb, wb).detach().float().cpu().numpy()


# ----------------------------------------------------------------------------- panels per model


def _ncnet_panels(net, feats_src, feats_trg, point_norm) -> list[Panel]:
    corr = net.correlation(feats_src, feats_trg)
    return [("NC-Net", target_heatmap(softmax_over_target(corr), point_norm))]


def _dccnet_panels(net, feats_src, feats_trg, point_norm) -> list[Panel]:
    out = net.fused(feats_src, feats_trg)
    w = sample_at_point(out["fusion_src_to_trg"], point_norm).tolist()
    return [
        (f"local (w={w[0]:.2f})", target_heatmap(softmax_over_target(out["local"]), point_norm)),
        (f"context (w={w[1]:.2f})", target_heatmap(softmax_over_target(out["context"]), point_norm)),
        ("fused", target_heatmap(out["fused_src_to_trg"], point_norm)),
    ]


def _mmnet_panels(net, feats_src, feats_trg, point_norm) -> list[Panel]:
    """MMNet: the matches of the point at every scale, coarsest first (the paper's figure 3)."""
    from ..models.mmnet_viz import mmnet_panels

    return mmnet_panels(net, feats_src, feats_trg, point_norm)


def _generic_panels(net, feats_src, feats_trg, point_norm) -> list[Panel]:
    m = net.head(feats_src, feats_trg)
    if m.corr is None:
        raise UsageError(f"{net.name} returns no correlation to show")
    return [(net.name, target_heatmap(softmax_over_target(m.corr), point_norm))]


#: model name → ``f(net, feats_src, feats_trg, point_norm) -> [(title, heatmap (hB, wB))]``.
PANEL_BUILDERS: dict[str, Callable[..., list[Panel]]] = {
    "ncnet": _ncnet_panels,
    "dccnet": _dccnet_panels,
    "mmnet": _mmnet_panels,
}


def model_panels(net, feats_src, feats_trg, point_norm) -> list[Panel]:
    """The panels of ``net`` for a source point (a generic one-panel view for unregistered models)."""
    with torch.no_grad():
        return PANEL_BUILDERS.get(net.name, _generic_panels)(net, feats_src, feats_trg, point_norm)


# ----------------------------------------------------------------------------- the stage


def check_point(xy: tuple[float, float], size: tuple[int, int]) -> None:
    """Refuse a source point ``(x, y)`` outside an image of ``size = (H, W)``."""
    if not (0 <= xy[0] <= size[1] - 1 and 0 <= xy[1] <= size[0] - 1):
        raise UsageError(f"{param('point')} {xy[0]:g},{xy[1]:g} is outside the {size[1]}x{size[0]} source image")


def image_or_blank(path: Path | None, size: tuple[int, int]) -> Image.Image:
    """The image at ``path``, or a grey one of ``size = (H, W)`` when it is not there (a record's images may be gone)."""
    if path and Path(path).is_file():
        return load_image(path)
    return Image.new("RGB", (size[1], size[0]), (128, 128, 128))


def select_pair(records, pair: str | None = None) -> PairRecord:
    """The record ``pair`` of a stream (default: the first)."""
    for rec in records:
        if pair is None or rec.pair_id == pair:
            return rec
    raise DataError(f"no record '{pair}' in the input" if pair else "the input holds no records")


def show_point(
    inputs: Sequence[str | Path],
    model: str,
    point: tuple[float, float],
    weights: str | Path | None = "default",
    backbone: str = DEFAULT_BACKBONE,
    size: int | None = None,
    pair: str | None = None,
    device: torch.device | str = "cpu",
    filler: LayerFiller | None = None,
) -> tuple[Image.Image, list[Panel]]:
    """The ``show`` figure of source pixel ``point = (x, y)`` and its panels.

    ``inputs``: two images (source, target; the model's backbone runs on them
    at ``size``, default the model's), or one records source (a path, or
    ``-``/nothing for standard input) holding features; ``pair`` picks the
    record (default: the first). Layers the model reads that the record
    lacks are computed by ``filler``. A record's images that are gone are
    drawn grey.
    """
    if len(inputs) == 2:
        src_img, trg_img = load_image(inputs[0]), load_image(inputs[1])
        src_size = (src_img.height, src_img.width)
        check_point(point, src_size)
        net = build_model(model, backbone=backbone, weights=weights).to(device).eval()
        side = size or net.input_size
        layers = net.required_layers
        with torch.no_grad():
            feats_src = net.backbone(image_to_tensor(src_img, side).to(device), layers)
            feats_trg = net.backbone(image_to_tensor(trg_img, side).to(device), layers)
    else:
        rec = select_pair(iter_records(inputs[0] if inputs else None), pair)
        check_point(point, rec.src_size)
        net = build_model(model, backbone=record_backbone(rec, "show"), backbone_weights="random", weights=weights).to(device).eval()
        layers = net.required_layers
        rec = (filler or LayerFiller(device)).fill(rec, layers, model, net.input_resize)
        fa, fb, _ = record_features(rec, layers, device, "show", model=model)
        feats_src, feats_trg = dict(zip(layers, fa)), dict(zip(layers, fb))
        src_size = rec.src_size
        src_img, trg_img = image_or_blank(rec.image_path("src"), rec.src_size), image_or_blank(rec.image_path("trg"), rec.trg_size)
    panels = model_panels(net, feats_src, feats_trg, point_to_normalized(point, src_size))
    return heatmap_figure(src_img, point, trg_img, panels), panels
