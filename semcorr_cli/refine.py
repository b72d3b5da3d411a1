"""``semcorr refine``: features records → records with NC-Net's or DCCNet's refined correlation."""

from __future__ import annotations

import typer

from .common import (
    CompressionOpt,
    DeviceOpt,
    DtypeOpt,
    OutputOpt,
    QuietOpt,
    check_outputs,
    check_records_input,
    handle_errors,
    history_line,
    layer_filler,
    model_weights,
    progress,
    resolve_device,
    warn,
)
from .common import Compression, Dtype, weights_option  # shared option declarations

HELP = """Refine correlations with a neighbourhood-consensus model (NC-Net or DCCNet).

Reads features records (from `semcorr extract`; layers the model reads that a
record lacks are computed from its images, said once on stderr) and writes each record with a refined 4D correlation `corr` (h_src, w_src,
h_trg, w_trg):

--model ncnet: mutual matching → 4D neighbourhood consensus → mutual matching
of the features' cosine correlation (higher = better match).

--model dccnet: the dynamically fused local + context scores; for every
source cell a distribution over the target cells (sums to 1). DCCNet's two
directions are two merges, not one volume and its transpose: the target→source
one goes to extra/dccnet/fused_trg_to_src (h_trg, w_trg, h_src, w_src). The
per-cell fusion weights (local, context) go to extra/dccnet/fusion_src_to_trg
(2, h_src, w_src) and extra/dccnet/fusion_trg_to_src (2, h_trg, w_trg).

`semcorr flow` then matches a refined record with the model's own evaluation
rule (softmax over the other image, then argmax; each direction from its own
scores) unless --method is given.

Flows already in a record are dropped (they no longer match the new corr).

--weights: default (weights shipped with semcorr), none (an untrained head,
for trying the pipeline), a semcorr checkpoint (.safetensors), or the
authors' released file (ncnet_pfpascal.pth.tar, dccnet_pfpascal.pth.tar;
ResNet-101 features: extract with --backbone resnet101).

Examples:

  semcorr extract a.jpg b.jpg --model dccnet | semcorr refine --model dccnet | semcorr flow -o flow.h5

  semcorr refine feats.h5 --model ncnet --weights ncnet_pfpascal.pth.tar -o refined.h5 --dtype float16
"""


def refine_cmd(
    input: str = typer.Argument(None, help="Features records file, or '-'/omitted for stdin.", show_default=False),
    model: str = typer.Option(..., "--model", help="ncnet or dccnet."),
    weights: str = weights_option("default, none, a .safetensors checkpoint or the authors' .pth.tar."),
    output: str = OutputOpt,
    device: str = DeviceOpt,
    dtype: Dtype = DtypeOpt,
    compression: Compression = CompressionOpt,
    quiet: bool = QuietOpt,
) -> None:
    check_outputs(output)  # before torch is imported
    check_records_input(input)

    from semcorr.io.stream import RecordWriter, iter_records
    from semcorr.pipeline import refine_records

    dev = resolve_device(device)
    filler = layer_filler(dev, f"refine --model {model}", quiet)
    stream = refine_records(iter_records(input), model, model_weights(weights), dev, filler, None if quiet else warn)
    with RecordWriter(output, history_line(), dtype=dtype, compression=compression) as writer, progress(quiet) as bar:
        task = bar.add_task(f"refine ({model})", total=None)
        for rec in stream:
            writer.write(rec)
            bar.advance(task)


def register(app: typer.Typer) -> None:
    app.command("refine", help=HELP)(handle_errors(refine_cmd))
