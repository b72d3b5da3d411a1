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


def _select(records, pair: str | None, need: str = "flow"):
    from core.errors import DataError, UsageError

    chosen = None
    for rec in records:
        if pair is None or rec.pair_id == pair:
            if chosen is not None:
                raise UsageError("the input holds several pairs: choose one with --pair ID")
            chosen = rec
            if pair is not None:
                break
    if chosen is None:
        raise DataError(f"no pair '{pair}' in the input" if pair else "the input holds no pairs")
    if need == "mask":
        if not chosen.mask:
            raise DataError(
                f"record '{chosen.pair_id}' has no co-segmentation masks; make them with "
                "'semcorr flow --model sfnet --weights W' on a checkpoint with mask regression layers"
            )
    elif not chosen.flow:
        raise DataError(
            f"record '{chosen.pair_id}' has no flow (it is a '{chosen.stage}' record); pipe it through 'semcorr flow' first"
        )
    return chosen


def _direction(rec, path: Path, direction: str) -> str | None:
    """'src' when ``path`` is the record's source image (by path or file name), 'trg' when it is the target; None when neither."""
    if direction in ("src", "trg"):
        return direction
    p = str(Path(path).resolve())
    for side in ("src", "trg"):
        name = rec.image_path(side)
        if str(name.resolve()) == p or name.name == Path(path).name:
            return side
    return None


def _shown(rec, side: str) -> str:
    h, w = rec.src_size if side == "src" else rec.trg_size
    return f"{'source' if side == 'src' else 'target'} '{rec.src_path if side == 'src' else rec.trg_path}' ({w}x{h})"


def _checked_side(rec, path: Path, size: tuple[int, int], named: str | None, what: str, force: bool) -> str:
    """The side ``path`` (of upright ``size = (H, W)``) belongs to; refuse an input that is not the record's.

    ``named``: the side found by path or name (or given by --direction). An
    input without one is placed by its size; with ``force`` a mismatch is
    warped anyway (resized), on the named side or the source.
    """
    from core.errors import DataError

    fits = [s for s in ("src", "trg") if tuple(rec.src_size if s == "src" else rec.trg_size) == tuple(size)]
    side = named or (fits[0] if fits else None)
    if side is not None and side in fits:
        return side
    if force:
        return side or "src"
    h, w = size
    if side is None:
        raise DataError(
            f"{what} '{path}' ({w}x{h}) is neither the record's {_shown(rec, 'src')} nor its {_shown(rec, 'trg')}; "
            "give the one the flow was computed from, or --force to warp it anyway (resized)"
        )
    raise DataError(f"{what} '{path}' is {w}x{h} but the record's {_shown(rec, side)}; --force warps it anyway (resized)")


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
    from core.checks import check_image_file
    from core.csvtable import read_points_csv
    from core.errors import DataError, UsageError

    given = [x for x in (image, mask, keypoints, coseg) if x is not None]
    if len(given) != 1:
        raise UsageError("give exactly one of --image, --mask, --keypoints or --coseg")
    if direction not in ("auto", "src", "trg"):
        raise UsageError(f"--direction must be auto, src or trg, not '{direction}'")
    if coseg is not None:
        import numpy as np
        from PIL import Image

        from core.io.stream import iter_records
        from core.weights import atomic_write_bytes

        from core.coseg import THRESHOLD

        if coseg not in ("src", "trg"):
            raise UsageError(f"--coseg must be src or trg, not '{coseg}'")
        rec = _select(iter_records(input), pair, need="mask")
        if coseg not in rec.mask:
            raise DataError(f"record '{rec.pair_id}' has no mask/{coseg}")
        fg = np.asarray(rec.mask[coseg]) > THRESHOLD
        _save_png(Image.fromarray(fg.astype(np.uint8) * 255, mode="L"), output, atomic_write_bytes)
        if not quiet:
            typer.echo(f"co-segmentation of the {'source' if coseg == 'src' else 'target'}: {int(fg.sum())} foreground pixels → {output}", err=True)
        return
    # what is given is checked before torch is imported
    check_outputs(output)
    check_records_input(input)
    for path, what in ((image, "image"), (mask, "mask"), (other, "image")):
        if path is not None:
            check_image_file(path, what)
    pts = read_points_csv(keypoints) if keypoints is not None else None

    import numpy as np
    import torch

    from core.errors import DataError, UsageError
    from core.images import float_to_image, image_to_float, load_image, load_mask, original_size, resize_mask
    from core.io.stream import iter_records
    from core.warp import transfer_keypoints, warp_image, warp_mask
    from core.weights import atomic_write_bytes, atomic_write_text

    rec = _select(iter_records(input), pair)
    named = _direction(rec, given[0], direction)
    if image is not None:
        img = load_image(image)
        side = _checked_side(rec, image, original_size(img), named, "image", force)
    elif mask is not None:
        m = load_mask(mask)
        side = _checked_side(rec, mask, m.shape, named, "mask", force)
    else:
        side = named or "src"
    # An input on side S is read in its own frame; the flow defined on the other frame points into it.
    into_other = "trg_to_src" if side == "src" else "src_to_trg"
    own_flow = "src_to_trg" if side == "src" else "trg_to_src"
    own_size = rec.src_size if side == "src" else rec.trg_size
    other_path = other or rec.image_path("trg" if side == "src" else "src")
    if (matches or overlay) and other is None and not other_path.is_file():
        raise DataError(f"the record's other image '{other_path}' is not here (paths are as extract saw them); give it with --other FILE")

    if keypoints is not None:
        moved = transfer_keypoints(torch.from_numpy(pts), torch.from_numpy(rec.flow[own_flow])).numpy()
        lines = ["x,y"] + [f"{x:.3f},{y:.3f}" for x, y in moved]
        atomic_write_text(output, "\n".join(lines) + "\n")
        if not quiet:
            typer.echo(f"moved {int(np.isfinite(moved).all(1).sum())} of {len(pts)} points → {output}", err=True)
        return

    if mask is not None:
        if m.shape != tuple(own_size):
            m = resize_mask(m, own_size)
        flow = torch.from_numpy(rec.flow[into_other]).unsqueeze(0)
        out = warp_mask(torch.from_numpy(m)[None, None], flow)[0, 0].numpy()
        from PIL import Image

        _save_png(Image.fromarray((out * 255).astype(np.uint8), mode="L"), output, atomic_write_bytes)
        return

    if (img.height, img.width) != tuple(own_size):
        img = img.resize((own_size[1], own_size[0]))
    if (top != 30 or foreground is not None) and not matches:
        raise UsageError("--top and --foreground go with --matches")
    if matches:
        fg = None
        if foreground is not None:
            fg = load_mask(foreground)
            if fg.shape != tuple(own_size):
                raise DataError(f"--foreground mask '{foreground}' is {fg.shape[1]}x{fg.shape[0]}, not the image's {own_size[1]}x{own_size[0]}")
        _save_png(_matches_picture(rec, img, load_image(other_path), side, top, fg), output, atomic_write_bytes)
        if not quiet:
            typer.echo(f"drew matches of {image} → {output}", err=True)
        return
    flow = torch.from_numpy(rec.flow[into_other]).unsqueeze(0)
    warped = float_to_image(warp_image(image_to_float(img), flow))
    if overlay:
        from core.viz import blend

        warped = blend(warped, load_image(other_path), 0.5)
    _save_png(warped, output, atomic_write_bytes)
    if not quiet:
        typer.echo(f"warped {image} into the {'target' if side == 'src' else 'source'} frame → {output}", err=True)


def _matches_picture(rec, img, other_img, side: str, top: int, foreground=None):
    """The --matches drawing: ``img`` (on ``side``, at the record's size) and the other image, titled, with a colour bar."""
    from core.viz import GRID_FOR_MATCHES, colour_bar, draw_scored_matches, sample_matches, with_title_and_legend

    own, back = ("src_to_trg", "trg_to_src") if side == "src" else ("trg_to_src", "src_to_trg")
    other_h, other_w = rec.trg_size if side == "src" else rec.src_size
    if other_img.size != (other_w, other_h):
        other_img = other_img.resize((other_w, other_h))
    conf = rec.confidence.get(own)
    pts, moved, scores, consistent = sample_matches(rec.flow[own], rec.flow[back], conf, top=top or None, foreground=foreground)
    drawing, lo, hi = draw_scored_matches(img, other_img, pts, moved, scores)
    names = (Path(rec.src_path).name, Path(rec.trg_path).name)
    if side == "trg":
        names = names[::-1]
    title = f"{rec.method()}:  {names[0]}  to  {names[1]}  (pair {rec.pair_id})"
    label = "match confidence" if conf is not None else "cycle consistency"
    grid = f"{GRID_FOR_MATCHES}x{GRID_FOR_MATCHES}"
    note = (
        f"the {len(pts)} most confident of {consistent} cycle-consistent matches of a {grid} grid (--top 0: all)"
        if top
        else f"all {len(pts)} matches of a {grid} grid, background included"
    )
    bar = colour_bar(min(drawing.width, 360), lo, hi, label)
    return with_title_and_legend(drawing, title, bar, note)


def _save_png(img, output: Path, atomic_write_bytes) -> None:
    import io

    buf = io.BytesIO()
    fmt = "JPEG" if output.suffix.lower() in (".jpg", ".jpeg") else "PNG"
    img.save(buf, format=fmt)
    atomic_write_bytes(output, buf.getvalue())


def register(app: typer.Typer) -> None:
    app.command("warp", help=HELP)(handle_errors(warp_cmd))
