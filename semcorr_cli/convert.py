"""``semcorr convert-weights``: authors' released checkpoints → semcorr's safetensors + JSON."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import check_outputs, err_console, handle_errors
from .common import quiet_option  # shared option declarations

HELP = """Convert a released checkpoint into semcorr's own format (.safetensors + JSON sidecar).

The input is read safely (weights only, never arbitrary unpickling). The output
loads with --weights OUT.safetensors in every command.

Examples:

  semcorr convert-weights --model sfnet --backbone resnet101 best_checkpoint.pt sfnet_r101.safetensors

  semcorr convert-weights --model dccnet --backbone resnet101 dccnet_pfpascal.pth.tar dccnet.safetensors

  semcorr convert-weights --model mmnet --backbone fcn_resnet101 ckp_pascal_fcnres101.pth mmnet_fcn.safetensors
"""


def convert_cmd(
    source: Path = typer.Argument(..., help="The released checkpoint file."),
    output: Path = typer.Argument(..., help="Output .safetensors path (a .json sidecar is written beside it)."),
    model: str = typer.Option(..., "--model", help="sfnet, ncnet, dccnet or mmnet."),
    backbone: str = typer.Option("resnet101", "--backbone", help="The backbone the checkpoint was trained with."),
    quiet: bool = quiet_option("No summary line."),
) -> None:
    from semcorr.errors import UsageError

    if output.suffix != ".safetensors":
        raise UsageError("the output must end in .safetensors")
    check_outputs(output)  # before torch is imported

    from semcorr.models.pretrained import convert_released

    convert_released(source, output, model, backbone)
    if not quiet:
        err_console.print(f"wrote {output} and {output.with_suffix('.json')}")


def register(app: typer.Typer) -> None:
    app.command("convert-weights", help=HELP)(handle_errors(convert_cmd))
