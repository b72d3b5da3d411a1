"""``semcorr flow``: correlation (or features, with --model) records → dense flow records."""

from __future__ import annotations

import typer

from .common import (
    DeviceOpt,
    KeepInputsOpt,
    OutputOpt,
    QuietOpt,
    check_outputs,
    check_records_input,
    handle_errors,
    history_line,
    layer_filler,
    model_weights,
    progress,
    renamed,
    resolve_device,
    warn,
)
from .common import MatchMethod, weights_option  # shared option declarations

HELP = """Dense flow at the original image resolution, in both directions.

Without --model, reads correlation records (from `semcorr correlate` or
`semcorr refine`) and turns them into matches with --method:

  argmax              the best target cell of every source cell;
  soft-argmax         expected position under softmax(beta * scores);
  kernel-soft-argmax  SFNet's: a Gaussian window (std --sigma cells) around the
                      argmax, then softmax with temperature --beta (the
                      default for `correlate` records).

Records from `semcorr refine` are matched, unless --method is given, with the
rule of the model that refined them, as its authors' evaluation does:
NC-Net and DCCNet take a softmax over the other image's cells, then the
argmax (`corr_to_matches(do_softmax=True)`), each direction from its own
scores (DCCNet's two merges). With --model: SFNet matches by kernel
soft-argmax (beta 50, sigma 5), NC-Net/DCCNet as above, MMNet by its own
test-time rule (see docs/format.md).

With --model NAME, reads features records and runs the learned model's head:
sfnet, ncnet, dccnet, mmnet. Layers the model reads that a record lacks are
computed from the record's images (same backbone, weights and size; said
once on stderr); `semcorr extract --model NAME` stores them up front.

Flows are stored as absolute (x, y) pixel coordinates in the other image.

Examples:

  semcorr extract a.jpg b.jpg | semcorr correlate | semcorr flow --method kernel-soft-argmax -o flow.h5

  semcorr extract a.jpg b.jpg | semcorr flow --model sfnet | semcorr warp --image a.jpg -o out.png
"""


def flow_cmd(
    input: str = typer.Argument(None, help="Records file, or '-'/omitted for stdin.", show_default=False),
    method: MatchMethod = typer.Option(
        None, "--method", help="argmax, soft-argmax or kernel-soft-argmax [default: the refining model's rule, else kernel-soft-argmax].",
        show_default=False,
    ),
    beta: float = typer.Option(50.0, "--beta", help="Softmax temperature of the soft methods."),
    sigma: float = typer.Option(5.0, "--sigma", help="Std of the Gaussian window in cells (kernel-soft-argmax)."),
    mutual_nn: bool = typer.Option(False, "--mutual-nn", help="Keep only mutual nearest-neighbour scores before matching."),
    mutual: bool = typer.Option(False, "--mutual", hidden=True),  # the old spelling of --mutual-nn
    normalize_scores: bool = typer.Option(False, "--normalize-scores", help="L2-normalise each cell's scores over the other image first (SFNet)."),
    model: str = typer.Option(None, "--model", help="Learned model: sfnet, ncnet, dccnet or mmnet."),
    weights: str = weights_option("With --model: default (shipped weights), none (untrained), a checkpoint, or the authors' released file."),
    keep_inputs: bool = KeepInputsOpt,
    keep: bool = typer.Option(False, "--keep", hidden=True),  # the old spelling of --keep-inputs
    output: str = OutputOpt,
    device: str = DeviceOpt,
    quiet: bool = QuietOpt,
) -> None:
    from semcorr.errors import UsageError

    if beta <= 0 or sigma <= 0:
        raise UsageError("--beta and --sigma must be positive")
    check_outputs(output)  # before torch is imported
    check_records_input(input)

    from semcorr.flow import METHODS
    from semcorr.io.stream import RecordWriter, iter_records
    from semcorr.pipeline import flow_records

    if method is not None and method not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)}, not '{method}'")
    keep = bool(renamed(keep_inputs, keep, "--keep-inputs", "--keep", unset=False))
    mutual = bool(renamed(mutual_nn, mutual, "--mutual-nn", "--mutual", unset=False))
    dev = resolve_device(device)
    filler = layer_filler(dev, f"flow --model {model}", quiet)
    stream = flow_records(
        iter_records(input), model, model_weights(weights), keep, dev, filler, None if quiet else warn,
        method=method, beta=beta, sigma=sigma, mutual=mutual, normalize=normalize_scores,
    )  # fmt: skip
    with RecordWriter(output, history_line()) as writer, progress(quiet) as bar:
        task = bar.add_task("flow", total=None)
        for rec in stream:
            writer.write(rec)
            bar.advance(task)


def register(app: typer.Typer) -> None:
    app.command("flow", help=HELP)(handle_errors(flow_cmd))
