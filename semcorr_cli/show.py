"""``semcorr show``: where a source point matches in the target, as heatmaps (DCCNet's figure 1).

The panels come from :mod:`semcorr.pipeline.heatmaps` (one builder per model), the
figure from :func:`semcorr.viz.heatmap_figure`.
"""

from __future__ import annotations

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


def _parse_point(text: str) -> tuple[float, float]:
    from semcorr.errors import UsageError

    parts = text.replace(";", ",").split(",")
    try:
        x, y = (float(p) for p in parts)
    except ValueError:
        raise UsageError(f"--point must be X,Y in source pixels, got '{text}'") from None
    return x, y


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
    from semcorr.checks import check_image_file
    from semcorr.errors import UsageError

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

    from semcorr.pipeline import show_point
    from semcorr.viz import save_image

    dev = resolve_device(device)
    fig, panels = show_point(inputs, model, xy, w, backbone, size, pair, dev, layer_filler(dev, "show", quiet))
    save_image(fig, output, "PNG")
    if not quiet:
        console.print(f"wrote {output} ({fig.width}x{fig.height}, panels: {', '.join(t for t, _ in panels)})", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("show", help=HELP)(handle_errors(show_cmd))
