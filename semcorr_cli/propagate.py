"""``semcorr propagate``: carry keypoints of a first frame through a folder of frames."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer

from .common import check_outputs, err_console, handle_errors, progress, renamed, resolve_device
from .common import device_option, output_option, quiet_option, size_option, weights_option  # shared option declarations

HELP = """Carry the keypoints of the first frame through a folder of frames.

FRAMES is a folder of images (PNG/JPEG…), taken in name order; --points is a
CSV of the first frame's points, one x,y per row (pixels, 0-based; a header
row x,y is allowed). Writes, under -o DIR, one CSV per frame named after it
(x,y per point, NaN where a point is lost) and contact_sheet.png, every frame
with its points, one colour per point.

--mode first matches every frame to the first (errors do not accumulate);
--mode chain matches each frame to the previous one and moves the points
predicted there (small motions, but drift adds up). The JHMDB benchmark of
the same task: semcorr evaluate -d jhmdb --protocol jhmdb-sfnet.

Examples:

  semcorr propagate images/ --points points.csv -o tracked/ --model sfnet

  semcorr propagate images/ --points points.csv -o tracked/ --mode chain
"""


def propagate_cmd(
    frames: Path = typer.Argument(..., help="Folder of frames, taken in name order.", show_default=False),
    points: Path = typer.Option(..., "--points", help="CSV of the first frame's points (x,y per row)."),
    out: Path = output_option("Folder for the per-frame CSVs and contact_sheet.png."),
    out_old: Path = typer.Option(None, "--out", hidden=True),  # the spelling of the first release
    model: str = typer.Option("nn", "--model", "-m", help="nn (training-free), identity, or a learned model: sfnet, ncnet, dccnet, mmnet."),
    weights: str = weights_option("The learned model's checkpoint (default: shipped weights)."),
    mode: Literal["first", "chain"] = typer.Option("first", "--mode", help="first (every frame matched to the first) or chain (frame to frame)."),
    size: int = size_option("Working image size fed to the model (default: the model's)."),
    backbone: str = typer.Option(None, "--backbone", help="Feature backbone (default: the pipeline's)."),
    columns: int = typer.Option(5, "--columns", help="Thumbnails per row of the contact sheet."),
    device: str = device_option(),
    quiet: bool = quiet_option(),
) -> None:
    from core.errors import UsageError

    out = renamed(out, out_old, "--output", "--out")
    if out is None:
        raise UsageError("propagate needs an output folder: -o/--output DIR")
    check_outputs(folder=out)  # before torch is imported

    import io

    import numpy as np

    from core.csvtable import read_points_csv
    from core.data.folder import list_image_files
    from core.errors import DataError, UsageError
    from core.images import load_image
    from core.pipeline import build_predictor
    from core.propagate import MODES, propagate
    from core.viz import contact_sheet
    from core.weights import atomic_write_bytes, atomic_write_text

    if mode not in MODES:
        raise UsageError(f"--mode must be {' or '.join(MODES)}, not '{mode}'")
    if columns < 1:
        raise UsageError("--columns must be at least 1")
    if not frames.is_dir():
        raise DataError(f"frame folder '{frames}' does not exist")
    paths = list_image_files(frames)
    if len(paths) < 2:
        raise DataError(f"'{frames}' holds {len(paths)} image(s); propagation needs at least two frames")
    first = read_points_csv(points)
    images = [load_image(p) for p in paths]
    if any(im.size != images[0].size for im in images):
        raise DataError(f"the frames of '{frames}' are not all {images[0].width}x{images[0].height} pixels")
    opts = {"backbone": backbone, "size": size, "device": resolve_device(device)}
    if model not in ("nn", "identity"):
        opts["weights"] = weights
    predictor = build_predictor(model=model, **{k: v for k, v in opts.items() if v is not None})
    with progress(quiet) as bar:
        task = bar.add_task(f"propagate ({mode})", total=len(paths) - 1)

        def flow_between(a: int, b: int):
            flow = predictor.predict(images[a], images[b])[0]
            bar.advance(task)
            return flow

        tracked = propagate(first, len(paths), flow_between, mode)
    out.mkdir(parents=True, exist_ok=True)
    for path, pts in zip(paths, tracked):
        lines = ["x,y"] + [f"{x:.3f},{y:.3f}" for x, y in pts]
        atomic_write_text(out / f"{path.stem}.csv", "\n".join(lines) + "\n")
    buf = io.BytesIO()
    contact_sheet(images, tracked, columns=columns, labels=[p.name for p in paths]).save(buf, format="PNG")
    atomic_write_bytes(out / "contact_sheet.png", buf.getvalue())
    if not quiet:
        kept = int(np.isfinite(tracked[-1]).all(axis=1).sum())
        err_console.print(f"{len(first)} points through {len(paths)} frames ({mode}); {kept} in the last frame → {out}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("propagate", help=HELP)(handle_errors(propagate_cmd))
