"""``semcorr warp``: apply a flow record to an image, a mask or keypoints."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import typer

from .common import check_outputs, check_records_input, handle_errors
from .common import output_option, quiet_option  # shared option declarations

HELP = """Apply a flow record to an image, a binary mask or keypoints.

--image A   warps A into the other image's frame (backward warping, bilinear);
            A is matched against the record's src_path/trg_path (by path or
            name, else by size) to pick the direction (or say --direction
            src|trg). An image that is not the record's, or not of its size,
            is refused (--force warps it anyway, resized).
--mask M    the same for a binary mask (written as a 0/255 PNG).
--keypoints F.csv   moves points (x,y per row, optional x,y header) with the
            flow; writes x,y CSV
            (NaN where a point is outside the image).
--overlay   blend the warped image with the other image.
--matches   draw matches side by side instead of warping: the --top N (30)
            most confident of a 24x24 grid that the flows map back within 3%
            of the diagonal (background rarely does), coloured by confidence,
            with the model and pair in the title and a colour bar; --top 0
            draws every match of the grid; --foreground M.png keeps only
            matches on a mask of the image.
--coseg src|trg   writes the record's co-segmentation mask of that image
            (mask/src or mask/trg, from `semcorr flow --model sfnet` with a
            mask head) as a 0/255 PNG, foreground above 0.5.

Examples:

  semcorr extract a.jpg b.jpg | semcorr correlate | semcorr flow | semcorr warp --image a.jpg -o warped.png

  semcorr warp flow.h5 --keypoints points.csv -o moved.csv

  semcorr warp flow.h5 --image a.jpg --matches -o matches.png
"""


def warp_cmd(
    input: str = typer.Argument(None, help="Flow records file, or '-'/omitted for stdin.", show_default=False),
    image: Path = typer.Option(None, "--image", help="Image to warp into the other image's frame."),
    mask: Path = typer.Option(None, "--mask", help="Binary mask to warp."),
    keypoints: Path = typer.Option(None, "--keypoints", help="CSV of x,y points to transfer."),
    coseg: Optional[Literal["src", "trg"]] = typer.Option(None, "--coseg", help="src or trg: write that image's co-segmentation mask (mask/src, mask/trg) as PNG."),
    output: Path = output_option("Output .png (image, mask, drawing) or .csv (keypoints).", ...),
    pair: str = typer.Option(None, "--pair", help="Pair id to use when the input holds several."),
    direction: Literal["auto", "src", "trg"] = typer.Option("auto", "--direction", help="auto, src (the input is the source image) or trg."),
    other: Path = typer.Option(None, "--other", help="The other image (for --overlay/--matches; default: the record's path)."),
    overlay: bool = typer.Option(False, "--overlay", help="Blend the warped image with the other image."),
    matches: bool = typer.Option(False, "--matches", help="Draw the most confident matches side by side."),
    top: int = typer.Option(30, "--top", min=0, help="--matches: how many (0: every match of the grid)."),
    foreground: Path = typer.Option(None, "--foreground", help="--matches: only matches on this mask of the image."),
    force: bool = typer.Option(False, "--force", help="Warp an image or mask that is not the record's (or not of its size), resized."),
    quiet: bool = quiet_option("No summary line."),
) -> None:
    from semcorr.checks import check_image_file
    from semcorr.csvtable import read_points_csv
    from semcorr.errors import UsageError

    given = [x for x in (image, mask, keypoints, coseg) if x is not None]
    if len(given) != 1:
        raise UsageError("give exactly one of --image, --mask, --keypoints or --coseg")
    if direction not in ("auto", "src", "trg"):
        raise UsageError(f"--direction must be auto, src or trg, not '{direction}'")
    if coseg is not None:
        from semcorr.io.stream import iter_records
        from semcorr.pipeline import write_coseg_mask

        count = write_coseg_mask(iter_records(input), coseg, output, pair)
        if not quiet:
            typer.echo(f"co-segmentation of the {'source' if coseg == 'src' else 'target'}: {count} foreground pixels → {output}", err=True)
        return
    # what is given is checked before torch is imported
    check_outputs(output)
    check_records_input(input)
    for path, what in ((image, "image"), (mask, "mask"), (other, "image")):
        if path is not None:
            check_image_file(path, what)
    pts = read_points_csv(keypoints) if keypoints is not None else None

    from semcorr.io.stream import iter_records
    from semcorr.pipeline import apply_flow

    done = apply_flow(iter_records(input), output, image, mask, pts, pair, direction, other, overlay, matches, top, foreground, force)
    if quiet or done.kind == "mask":
        return
    if done.kind == "keypoints":
        typer.echo(f"moved {done.moved} of {done.total} points → {output}", err=True)
    elif done.kind == "matches":
        typer.echo(f"drew matches of {image} → {output}", err=True)
    else:
        typer.echo(f"warped {image} into the {'target' if done.side == 'src' else 'source'} frame → {output}", err=True)


def register(app: typer.Typer) -> None:
    app.command("warp", help=HELP)(handle_errors(warp_cmd))
