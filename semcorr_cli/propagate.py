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
    from semcorr.errors import UsageError

    out = renamed(out, out_old, "--output", "--out")
    if out is None:
        raise UsageError("propagate needs an output folder: -o/--output DIR")
    check_outputs(folder=out)  # before torch is imported

    from semcorr.pipeline import propagate_folder

    with progress(quiet) as bar:
        task = bar.add_task(f"propagate ({mode})", total=None)
        tracked = propagate_folder(
            frames, points, out, model, weights, mode, size, backbone, columns, resolve_device(device),
            on_step=lambda total: bar.update(task, total=total, advance=1),
        )  # fmt: skip
    if not quiet:
        n_points, n_frames = tracked.points.shape[1], len(tracked.frames)
        err_console.print(f"{n_points} points through {n_frames} frames ({mode}); {tracked.kept} in the last frame → {out}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("propagate", help=HELP)(handle_errors(propagate_cmd))
