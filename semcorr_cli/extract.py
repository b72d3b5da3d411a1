"""``semcorr extract-features`` (alias ``extract``): images → backbone features records."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import (
    CompressionOpt,
    DeviceOpt,
    DtypeOpt,
    OutputOpt,
    QuietOpt,
    err_console,
    handle_errors,
    history_line,
    parse_str_list,
    progress,
    resolve_device,
    working_size,
)

HELP = """Extract backbone features of image pairs.

Images are resized to a square working size (--size, default 400, PIL bilinear)
and passed through the backbone; the features of the chosen layers are written
as one record per pair, to a file (-o out.h5) or as a stream on stdout.

Examples:

  semcorr extract a.jpg b.jpg | semcorr correlate | semcorr flow | semcorr warp --image a.jpg -o out.png

  semcorr extract --pairs pairs.csv --root images/ -o feats.h5

  semcorr extract a.jpg b.jpg --model sfnet | semcorr flow --model sfnet -o flow.h5

The default backbone is MobileNetV2 with offline ImageNet weights; ResNets need
torchvision's weights (cached or downloadable) or --backbone-weights FILE.
"""


def extract_features(
    images: list[Path] = typer.Argument(None, help="Two images: source then target.", show_default=False),
    pairs: Path = typer.Option(None, "--pairs", help="CSV with columns source_image,target_image (batch mode)."),
    root: Path = typer.Option(None, "--root", help="Folder that relative paths in --pairs are resolved against (default: the CSV's folder)."),
    backbone: str = typer.Option(None, "--backbone", help="mobilenet_v2 (default), resnet50 or resnet101."),
    backbone_weights: str = typer.Option("default", "--backbone-weights", help="default, random, a torchvision weights name, or a .pth/.safetensors file."),
    layers: str = typer.Option(None, "--layers", help="Comma-separated layer names, e.g. layer3,layer4 or features.13 (default: the backbone's hypercolumn)."),
    model: str = typer.Option(None, "--model", help="Extract exactly the layers (and backbone) this model needs: sfnet, ncnet, dccnet, mmnet."),
    weights: str = typer.Option(None, "--weights", help="With --model: a checkpoint whose (fine-tuned) backbone extracts the features, as MMNet's does."),
    size: int = typer.Option(400, "--size", help="Working size: images are resized to SIZE x SIZE (16 to 4096)."),
    output: str = OutputOpt,
    device: str = DeviceOpt,
    dtype: str = DtypeOpt,
    compression: str = CompressionOpt,
    limit: int = typer.Option(None, "--limit", min=1, help="Only the first N pairs of --pairs."),
    batch_size: int = typer.Option(1, "--batch-size", min=1, help="Pairs passed through the backbone together."),
    quiet: bool = QuietOpt,
) -> None:
    from core.errors import UsageError
    from core.io.stream import RecordWriter
    from core.pairs import read_pairs_csv
    from core.images import parse_size
    from core.pipeline import FeatureExtractor

    working_size(size)
    if pairs is not None and images:
        raise UsageError("give either two images or --pairs, not both")
    if pairs is None:
        if not images or len(images) != 2:
            raise UsageError("extract needs exactly two images (source and target), or --pairs FILE")
        from core.pairs import ImagePair

        todo = [ImagePair("000000", str(images[0]), str(images[1]), images[0], images[1])]
    else:
        todo = read_pairs_csv(pairs, root)
        if limit:
            todo = todo[:limit]
    dev = resolve_device(device)
    layer_list = parse_str_list(layers)
    extractor = None
    if weights is not None and model is None:
        raise UsageError("--weights goes with --model")
    if model is not None:
        from core.models import build_model

        if layers:
            raise UsageError("--model chooses the layers; drop --layers")
        if weights is None:
            from core.weights import shipped_weights_path

            if shipped_weights_path(model, backbone or "mobilenet_v2").is_file():
                weights = "default"  # the shipped weights decide the layers (and any fine-tuned backbone)
        if weights is not None:
            kwargs = {"backbone": backbone} if backbone else {}
            m = build_model(model, backbone_weights=backbone_weights, weights=weights, **kwargs)
            extractor = FeatureExtractor(m.backbone.to(dev).eval(), list(m.required_layers), parse_size(size), dev)
            extractor.check_size()
        else:
            m = build_model(model, backbone=backbone or "mobilenet_v2", backbone_weights="random", weights=None)
            layer_list = list(m.required_layers)
            backbone = m.backbone.name
    if extractor is None:
        extractor = FeatureExtractor.create(backbone or "mobilenet_v2", backbone_weights, layer_list, size, dev)
    with RecordWriter(output, history_line(), dtype=dtype, compression=compression) as writer, progress(quiet or len(todo) < 2) as bar:
        task = bar.add_task("extract", total=len(todo))
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            for rec in extractor.extract_records([(p.pair_id, p.src_path, p.trg_path, p.src_name, p.trg_name) for p in chunk]):
                writer.write(rec)
                bar.advance(task)
    if not quiet and writer.is_file:
        err_console.print(f"wrote {writer.count} pair(s) to {output}")


def register(app: typer.Typer) -> None:
    fn = handle_errors(extract_features)
    app.command("extract-features", help=HELP)(fn)
    app.command("extract", help="Alias of extract-features. " + HELP)(fn)
