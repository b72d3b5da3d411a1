"""``semcorr extract-features`` (alias ``extract``): images → backbone features records."""

from __future__ import annotations

from pathlib import Path

import typer

from semcorr.checks import plural

from .common import (
    CompressionOpt,
    DeviceOpt,
    DtypeOpt,
    OutputOpt,
    QuietOpt,
    SkipBadOpt,
    bad_rows_gate,
    check_outputs,
    err_console,
    handle_errors,
    history_line,
    parse_str_list,
    progress,
    report_skipped,
    resolve_device,
    working_size,
)
from .common import Compression, Dtype, size_option, weights_option  # shared option declarations

HELP = """Extract backbone features of image pairs.

Images are resized to a square working size (--size, default 400, PIL bilinear)
and passed through the backbone; the features of the chosen layers are written
as one record per pair, to a file (-o out.h5) or as a stream on stdout.

Examples:

  semcorr extract a.jpg b.jpg | semcorr correlate | semcorr flow | semcorr warp --image a.jpg -o out.png

  semcorr extract --pairs pairs.csv --root images/ -o feats.h5

  semcorr extract a.jpg b.jpg --model sfnet | semcorr flow --model sfnet -o flow.h5

Every row of --pairs is checked first (cells, image files): bad rows are
listed with their row numbers and nothing is computed, or, with --skip-bad,
the good pairs are written and the skipped rows listed at the end (exit 1).

The default backbone is MobileNetV2 with offline ImageNet weights; ResNets need
torchvision's weights (cached or downloadable) or --backbone-weights FILE.
"""


def extract_features(
    images: list[Path] = typer.Argument(None, help="Two images: source then target.", show_default=False),
    pairs: Path = typer.Option(None, "--pairs", help="CSV with columns source_image,target_image (batch mode)."),
    root: Path = typer.Option(None, "--root", help="Folder that relative paths in --pairs are resolved against (default: the CSV's folder)."),
    backbone: str = typer.Option(None, "--backbone", help="mobilenet_v2 (default), resnet50, resnet101 or fcn_resnet101 (dilated, MMNet's FCN checkpoints)."),
    backbone_weights: str = typer.Option("default", "--backbone-weights", help="default, random, a torchvision weights name, or a .pth/.safetensors file."),
    layers: str = typer.Option(None, "--layers", help="Comma-separated layer names, e.g. layer3,layer4 or features.13 (default: the backbone's hypercolumn)."),
    model: str = typer.Option(None, "--model", help="Extract exactly the layers (and backbone) this model needs: sfnet, ncnet, dccnet, mmnet."),
    weights: str = weights_option("With --model: a checkpoint whose (fine-tuned) backbone extracts the features, as MMNet's does.", None),
    size: int = size_option("Working size: images are resized to SIZE x SIZE (16 to 4096).", 400),
    output: str = OutputOpt,
    device: str = DeviceOpt,
    dtype: Dtype = DtypeOpt,
    compression: Compression = CompressionOpt,
    limit: int = typer.Option(None, "--limit", min=1, help="Only the first N pairs of --pairs."),
    batch_size: int = typer.Option(1, "--batch-size", min=1, help="Pairs passed through the backbone together."),
    skip_bad: bool = SkipBadOpt,
    quiet: bool = QuietOpt,
) -> None:
    from semcorr.checks import check_image_file, check_layer_choice
    from semcorr.errors import UsageError
    from semcorr.io.pair_list import ImagePair, pairs_root, read_pair_list

    working_size(size)
    # Everything given is checked before torch is imported or a model is built.
    if pairs is not None and images:
        raise UsageError("give either two images or --pairs, not both")
    check_layer_choice(model, weights, layers)
    if pairs is None and (not images or len(images) != 2):
        raise UsageError("extract needs exactly two images (source and target), or --pairs FILE")
    check_outputs(output)
    listing = None
    if pairs is None:
        for path in images:
            check_image_file(path)
        todo = [ImagePair("000000", str(images[0]), str(images[1]), images[0], images[1])]
        image_root = Path.cwd()
    else:
        listing = read_pair_list(pairs, root, limit)
        todo = listing.pairs
        bad_rows_gate(listing.bad, listing.total, skip_bad, quiet)
        image_root = pairs_root(pairs, root).resolve()

    from semcorr.io.stream import RecordWriter
    from semcorr.pipeline import build_extractor, extract_pairs

    extractor = build_extractor(backbone, backbone_weights, parse_str_list(layers), size, resolve_device(device), model, weights)
    with RecordWriter(output, history_line(), dtype=dtype, compression=compression) as writer, progress(quiet or len(todo) < 2) as bar:
        task = bar.add_task("extract", total=len(todo))
        for rec in extract_pairs(extractor, todo, batch_size, listing, skip_bad, image_root):
            writer.write(rec)
            bar.advance(task)
    if not quiet and writer.is_file:
        err_console.print(f"wrote {writer.count} pair(s) to {output}")
    if listing is not None:
        where = output if output not in (None, "-") else "standard output"
        report_skipped(listing.bad, listing.total, f"the {plural(writer.count, 'other pair')} went to {where}")


def register(app: typer.Typer) -> None:
    fn = handle_errors(extract_features)
    app.command("extract-features", help=HELP)(fn)
    app.command("extract", help="Alias of extract-features. " + HELP)(fn)
