"""``semcorr correlate``: features records → 4D correlation records."""

from __future__ import annotations

from typing import Literal

import typer

from .common import (
    CompressionOpt,
    DeviceOpt,
    DtypeOpt,
    KeepInputsOpt,
    OutputOpt,
    QuietOpt,
    check_outputs,
    check_records_input,
    handle_errors,
    history_line,
    parse_str_list,
    progress,
    renamed,
    resolve_device,
)
from .common import Compression, Dtype  # shared option declarations

HELP = """Dense 4D correlation (h_src, w_src, h_trg, w_trg) from extracted features.

--mode hypercolumn (default): every layer resized to the finest grid,
centred (--center), L2-normalised, concatenated; one cosine-similarity volume.
--mode product: one correlation per layer, multiplied element-wise (SFNet's
multi-layer matching; combine with --relu).

Examples:

  semcorr extract a.jpg b.jpg | semcorr correlate | semcorr flow -o flow.h5

  semcorr correlate feats.h5 --layers features.13,features.16 --mode product --relu -o corr.h5
"""


def correlate_cmd(
    input: str = typer.Argument(None, help="Records file, or '-'/omitted for stdin.", show_default=False),
    layers: str = typer.Option(None, "--layers", help="Comma-separated layers to use (default: all in the record)."),
    mode: Literal["hypercolumn", "product"] = typer.Option("hypercolumn", "--mode", help="hypercolumn or product."),
    normalize: bool = typer.Option(True, "--normalize/--raw", help="L2-normalise features (cosine scores) or use raw dot products."),
    relu: bool = typer.Option(False, "--relu", help="Clamp negative scores to zero."),
    center: bool = typer.Option(True, "--center/--no-center", help="Subtract each channel's image mean before normalising (better training-free matches)."),
    mutual_matching: bool = typer.Option(False, "--mutual-matching", help="Re-weight scores with NC-Net's soft mutual nearest-neighbour filter."),
    keep_inputs: bool = KeepInputsOpt,
    keep_features: bool = typer.Option(False, "--keep-features", hidden=True),  # the old spelling of --keep-inputs
    output: str = OutputOpt,
    device: str = DeviceOpt,
    dtype: Dtype = DtypeOpt,
    compression: Compression = CompressionOpt,
    quiet: bool = QuietOpt,
) -> None:
    from semcorr.errors import UsageError

    if mode not in ("hypercolumn", "product"):
        raise UsageError(f"--mode must be hypercolumn or product, not '{mode}'")
    keep = bool(renamed(keep_inputs, keep_features, "--keep-inputs", "--keep-features", unset=False))
    check_outputs(output)  # before torch is imported
    check_records_input(input)

    from semcorr.io.stream import RecordWriter, iter_records
    from semcorr.pipeline import correlate_records

    options = dict(layers=parse_str_list(layers), mode=mode, normalize=normalize, relu=relu, keep_features=keep,
                   device=resolve_device(device), center=center, mutual_matching=mutual_matching)  # fmt: skip
    with RecordWriter(output, history_line(), dtype=dtype, compression=compression) as writer, progress(quiet) as bar:
        task = bar.add_task("correlate", total=None)
        for rec in correlate_records(iter_records(input), **options):
            writer.write(rec)
            bar.advance(task)


def register(app: typer.Typer) -> None:
    app.command("correlate", help=HELP)(handle_errors(correlate_cmd))
