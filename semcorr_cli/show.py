"""``semcorr show``: where a source point matches in the target, as heatmaps (DCCNet's figure 1).

The figure is built from panels: the source image with the chosen point,
then one ``(title, heatmap)`` panel per score map, each drawn over the target
image. :func:`heatmap_figure` takes any list of panels, and
:data:`PANEL_BUILDERS` maps a model name to the function that makes its
panels, so another model (e.g. a per-scale view) only registers a builder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import typer

from .common import DeviceOpt, QuietOpt, check_outputs, check_records_input, console, handle_errors, layer_filler, model_weights, resolve_device, working_size
from .common import output_option, size_option, weights_option  # shared option declarations

HELP = """Heatmaps of a source point's matching scores over the target image.

For DCCNet, three panels side by side: the local and the context branches'
scores (softmax over the target) and the dynamically fused score, each
titled with the branch's fusion weight at the point — the paper's figure 1.
NC-Net shows its refined score.

INPUTS are two images (source, target), or one records file/stream holding
features (from `semcorr extract`; '-' for stdin; layers the model reads that
the record lacks are computed from its images).
--point is in source-image pixels (x right, y down, from the top-left pixel).

Examples:

  semcorr show --model dccnet --point 120,85 a.jpg b.jpg -o fig.png

  semcorr extract a.jpg b.jpg --model dccnet | semcorr show --model dccnet --point 60,40 - -o fig.png

  semcorr show --model mmnet --point 120,85 a.jpg b.jpg -o scales.png
"""

PANEL_HEIGHT = 240
TITLE_HEIGHT = 22
GAP = 6


# ----------------------------------------------------------------------------- sampling


def point_to_normalized(point: tuple[float, float], size: tuple[int, int]) -> tuple[float, float]:
    """Pixel ``(x, y)`` in an image of ``size = (H, W)`` → normalised ``(x, y)`` (align_corners)."""
    h, w = size
    return (2.0 * point[0] / max(w - 1, 1) - 1.0, 2.0 * point[1] / max(h - 1, 1) - 1.0)


def sample_at_point(maps, point_norm: tuple[float, float]):
    """Bilinear value of per-source-cell maps at a normalised source point.

    maps ``(1, C, hA, wA)`` → ``(C,)`` tensor; cells at ``linspace(-1, 1, n)``.
    """
    import torch
    import torch.nn.functional as F

    grid = torch.tensor([[[list(point_norm)]]], dtype=maps.dtype, device=maps.device)
    return F.grid_sample(maps, grid, mode="bilinear", padding_mode="border", align_corners=True)[0, :, 0, 0]


def target_heatmap(scores, point_norm: tuple[float, float]) -> np.ndarray:
    """A source point's scores over the target: ``(1, hA, wA, hB, wB)`` → ``(hB, wB)`` numpy.

    The maps of the source cells around the point are interpolated bilinearly.
    """
    _, ha, wa, hb, wb = scores.shape
    maps = scores.reshape(1, ha, wa, hb * wb).permute(0, 3, 1, 2)
    return sample_at_point(maps, point_norm).reshape(hb, wb).detach().float().cpu().numpy()


# ----------------------------------------------------------------------------- panels per model


def _ncnet_panels(net, feats_src, feats_trg, point_norm) -> list[tuple[str, np.ndarray]]:
    from core.consensus import softmax_over_target

    corr = net.correlation(feats_src, feats_trg)
    return [("NC-Net", target_heatmap(softmax_over_target(corr), point_norm))]


def _dccnet_panels(net, feats_src, feats_trg, point_norm) -> list[tuple[str, np.ndarray]]:
    from core.consensus import softmax_over_target

    out = net.fused(feats_src, feats_trg)
    w = sample_at_point(out["fusion_src_to_trg"], point_norm).tolist()
    return [
        (f"local (w={w[0]:.2f})", target_heatmap(softmax_over_target(out["local"]), point_norm)),
        (f"context (w={w[1]:.2f})", target_heatmap(softmax_over_target(out["context"]), point_norm)),
        ("fused", target_heatmap(out["fused_src_to_trg"], point_norm)),
    ]


def _generic_panels(net, feats_src, feats_trg, point_norm) -> list[tuple[str, np.ndarray]]:
    from core.consensus import softmax_over_target
    from core.errors import UsageError

    m = net.head(feats_src, feats_trg)
    if m.corr is None:
        raise UsageError(f"{net.name} returns no correlation to show")
    return [(net.name, target_heatmap(softmax_over_target(m.corr), point_norm))]


#: model name → ``f(net, feats_src, feats_trg, point_norm) -> [(title, heatmap (hB, wB))]``.
def _mmnet_panels(net, feats_src, feats_trg, point_norm) -> list[tuple[str, np.ndarray]]:
    """MMNet: the matches of the point at every scale, coarsest first (the paper's figure 3)."""
    from core.models.mmnet_viz import mmnet_panels

    return mmnet_panels(net, feats_src, feats_trg, point_norm)


PANEL_BUILDERS: dict[str, Callable[..., list[tuple[str, np.ndarray]]]] = {
    "ncnet": _ncnet_panels,
    "dccnet": _dccnet_panels,
    "mmnet": _mmnet_panels,
}


def model_panels(net, feats_src, feats_trg, point_norm) -> list[tuple[str, np.ndarray]]:
    """The panels of ``net`` for a source point (a generic one-panel view for unregistered models)."""
    import torch

    with torch.no_grad():
        return PANEL_BUILDERS.get(net.name, _generic_panels)(net, feats_src, feats_trg, point_norm)


# ----------------------------------------------------------------------------- drawing


def upsample_heatmap(heat: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(h, w)`` cell scores → ``(H, W)`` with cell centres on the image's corner pixels (align_corners)."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.asarray(heat, dtype=np.float32))[None, None]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=True)[0, 0].numpy()


def _marker(draw, xy: tuple[float, float], colour=(255, 255, 255), r: int = 6) -> None:
    x, y = xy
    draw.ellipse([x - r, y - r, x + r, y + r], outline=(0, 0, 0), width=3)
    draw.ellipse([x - r, y - r, x + r, y + r], outline=colour, width=2)
    draw.line([x - r - 3, y, x + r + 3, y], fill=colour, width=1)
    draw.line([x, y - r - 3, x, y + r + 3], fill=colour, width=1)


def _titled(img, title: str):
    from PIL import Image, ImageDraw

    canvas = Image.new("RGB", (img.width, img.height + TITLE_HEIGHT), (255, 255, 255))
    canvas.paste(img, (0, TITLE_HEIGHT))
    ImageDraw.Draw(canvas).text((4, 5), title, fill=(0, 0, 0))
    return canvas


def _fit_height(img, height: int):
    from PIL import Image

    w = max(1, round(img.width * height / img.height))
    return img.convert("RGB").resize((w, height), Image.BILINEAR)


def heatmap_panel(target, heat: np.ndarray, title: str, height: int = PANEL_HEIGHT, alpha: float = 0.55):
    """One panel: ``heat (hB, wB)`` over the target image, its maximum marked, with a title and a colour bar of its range."""
    from PIL import Image, ImageDraw

    from core.viz import blend, colour_bar, heatmap_image

    base = _fit_height(target, height)
    up = upsample_heatmap(heat, (base.height, base.width))
    img = blend(heatmap_image(up), base, alpha)
    y, x = np.unravel_index(int(np.argmax(up)), up.shape)
    _marker(ImageDraw.Draw(img), (float(x), float(y)), colour=(255, 255, 255), r=4)
    titled = _titled(img, f"{title}  max {float(np.max(heat)):.3f}")
    bar = colour_bar(titled.width, float(np.nanmin(up)), float(np.nanmax(up)), "matching score")
    panel = Image.new("RGB", (titled.width, titled.height + bar.height), (255, 255, 255))
    panel.paste(titled, (0, 0))
    panel.paste(bar, (0, titled.height))
    return panel


def heatmap_figure(
    source,
    point: tuple[float, float],
    target,
    panels: Sequence[tuple[str, np.ndarray]],
    height: int = PANEL_HEIGHT,
):
    """The whole figure: source with ``point`` (pixels), then every ``(title, heatmap)`` panel over ``target``.

    source / target: PIL images; heatmaps ``(hB, wB)`` over the target's
    feature grid (any size; drawn with cell centres at the image corners).
    Returns a PIL RGB image.
    """
    from PIL import Image, ImageDraw

    src = _fit_height(source, height)
    scale = height / source.height
    _marker(ImageDraw.Draw(src), (point[0] * scale, point[1] * scale), colour=(255, 40, 40))
    tiles = [_titled(src, f"source ({point[0]:g}, {point[1]:g})")]
    tiles += [heatmap_panel(target, heat, title, height) for title, heat in panels]
    width = sum(t.width for t in tiles) + GAP * (len(tiles) - 1)
    fig = Image.new("RGB", (width, max(t.height for t in tiles)), (255, 255, 255))
    x = 0
    for t in tiles:
        fig.paste(t, (x, 0))
        x += t.width + GAP
    return fig


# ----------------------------------------------------------------------------- command


def _parse_point(text: str) -> tuple[float, float]:
    from core.errors import UsageError

    parts = text.replace(";", ",").split(",")
    try:
        x, y = (float(p) for p in parts)
    except ValueError:
        raise UsageError(f"--point must be X,Y in source pixels, got '{text}'") from None
    return x, y


def _check_point(xy: tuple[float, float], size: tuple[int, int]) -> None:
    from core.errors import UsageError

    if not (0 <= xy[0] <= size[1] - 1 and 0 <= xy[1] <= size[0] - 1):
        raise UsageError(f"--point {xy[0]:g},{xy[1]:g} is outside the {size[1]}x{size[0]} source image")


def _image_or_blank(path: Path, size: tuple[int, int]):
    from PIL import Image

    from core.images import load_image

    if path and Path(path).is_file():
        return load_image(path)
    return Image.new("RGB", (size[1], size[0]), (128, 128, 128))


def show_cmd(
    inputs: list[str] = typer.Argument(None, help="SOURCE TARGET images, or one records file ('-' for stdin).", show_default=False),
    model: str = typer.Option(..., "--model", help="dccnet or ncnet (other models: their refined score)."),
    point: str = typer.Option(..., "--point", help="Source point X,Y in pixels."),
    output: str = output_option("Output PNG file.", ...),
    weights: str = weights_option("default, none (untrained), a .safetensors checkpoint or the authors' .pth.tar."),
    backbone: str = typer.Option("mobilenet_v2", "--backbone", help="Backbone for image inputs (records carry their own)."),
    size: int = size_option("Working size for image inputs (default: the model's, 400)."),
    pair: str = typer.Option(None, "--pair", help="With a records input: the pair id to show (default: the first)."),
    device: str = DeviceOpt,
    quiet: bool = QuietOpt,
) -> None:
    from core.checks import check_image_file
    from core.errors import DataError, UsageError

    xy = _parse_point(point)
    w = model_weights(weights)
    working_size(size)
    inputs = list(inputs or [])
    if len(inputs) > 2:
        raise UsageError(f"give two images or one records file, not {len(inputs)} inputs")
    # what is given is checked before torch is imported or a model is built
    check_outputs(output)
    if len(inputs) == 2:
        for path in inputs:
            check_image_file(path)
    else:
        check_records_input(inputs[0] if inputs else None)

    import torch

    from core.images import image_to_tensor, load_image
    from core.models import build_model

    dev = resolve_device(device)
    if len(inputs) == 2:
        src_img, trg_img = load_image(inputs[0]), load_image(inputs[1])
        _check_point(xy, (src_img.height, src_img.width))
        net = build_model(model, backbone=backbone, weights=w).to(dev).eval()
        side = size or net.input_size
        layers = net.required_layers
        with torch.no_grad():
            feats_src = net.backbone(image_to_tensor(src_img, side).to(dev), layers)
            feats_trg = net.backbone(image_to_tensor(trg_img, side).to(dev), layers)
        src_size = (src_img.height, src_img.width)
    else:
        from core.io.stream import iter_records
        from core.pipeline import record_features

        from .refine import record_backbone

        rec = None
        for r in iter_records(inputs[0] if inputs else None):
            if pair is None or r.pair_id == pair:
                rec = r
                break
        if rec is None:
            raise DataError(f"no record '{pair}' in the input" if pair else "the input holds no records")
        _check_point(xy, rec.src_size)
        net = build_model(model, backbone=record_backbone(rec, "show"), backbone_weights="random", weights=w).to(dev).eval()
        layers = net.required_layers
        rec = layer_filler(dev, "show", quiet).fill(rec, layers, model, net.input_resize)
        fa, fb, _ = record_features(rec, layers, dev, "show", model=model)
        feats_src, feats_trg = dict(zip(layers, fa)), dict(zip(layers, fb))
        src_size = rec.src_size
        src_img, trg_img = _image_or_blank(rec.image_path("src"), rec.src_size), _image_or_blank(rec.image_path("trg"), rec.trg_size)
    panels = model_panels(net, feats_src, feats_trg, point_to_normalized(xy, src_size))
    fig = heatmap_figure(src_img, xy, trg_img, panels)
    import io

    from core.weights import atomic_write_bytes

    buf = io.BytesIO()
    fig.save(buf, format="PNG")
    atomic_write_bytes(output, buf.getvalue())
    if not quiet:
        console.print(f"wrote {output} ({fig.width}x{fig.height}, panels: {', '.join(t for t, _ in panels)})", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("show", help=HELP)(handle_errors(show_cmd))
