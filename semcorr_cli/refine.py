"""``semcorr refine``: features records → records with NC-Net's or DCCNet's refined correlation."""

from __future__ import annotations

from typing import Any

import typer

from .common import (
    CompressionOpt,
    DeviceOpt,
    DtypeOpt,
    OutputOpt,
    QuietOpt,
    check_outputs,
    check_records_input,
    err_console,
    handle_errors,
    history_line,
    layer_filler,

    model_weights,
    progress,
    resolve_device,
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


#: Name under ``extra/<model>/`` of the target→source scores of a model whose two directions differ.
TRG_TO_SRC_SCORES = "fused_trg_to_src"


def build_refiner(model: str, backbone: str, weights: str):
    """The model whose head refines records; its backbone is never run (features come stored)."""
    from core.errors import UsageError
    from core.models import build_model

    if model not in ("ncnet", "dccnet"):
        raise UsageError(f"--model must be ncnet or dccnet, not '{model}'")
    return build_model(
        model,
        backbone=backbone,
        backbone_weights="random",
        weights=model_weights(weights),
    )


def record_backbone(rec, stage: str = "refine") -> str:
    """The backbone that produced a record's features (``stage``: the command reading them, for errors)."""
    from core.errors import DataError

    names = {a.get("backbone") for a in rec.feature_attrs.values()} - {None}
    if not rec.features["src"]:
        raise DataError(
            f"record '{rec.pair_id}' has no features (it is a '{rec.stage}' record); {stage} needs the output of 'semcorr extract'"
        )
    if len(names) != 1:
        raise DataError(f"record '{rec.pair_id}' does not say which backbone made its features")
    return names.pop()


def refine_record(rec, net, device) -> Any:
    """Run the model's head on a features record; set ``corr`` (and DCCNet's fusion weights)."""
    import numpy as np
    import torch

    from core.errors import DataError
    from core.pipeline import record_features

    backbone = record_backbone(rec)
    if backbone != net.backbone.name:
        raise DataError(
            f"record '{rec.pair_id}' holds {backbone} features but the first record's were {net.backbone.name}; "
            "refine one backbone per stream"
        )
    layers = net.required_layers
    layer = net.layer
    fa, fb, _ = record_features(rec, layers, device, f"refine --model {net.name}", model=net.name)
    with torch.no_grad():
        m = net.head(dict(zip(layers, fa)), dict(zip(layers, fb)))
    rec.corr = m.corr[0].float().cpu().numpy()
    attrs = rec.feature_attrs.get(layer, {})
    rec.corr_attrs = {
        "method": net.name,
        "scores": "fused-distribution-src-to-trg" if net.name == "dccnet" else "mutual-consensus",
        "layers": layers,
        "backbone": backbone,
        "backbone_weights": attrs.get("weights"),
        "model_config": net.config(),
        "weights": net.weights_id,
        # how `flow` reads this record by default: the model's own evaluation rule
        "matching": net.test_matching["method"],
        "confidence": net.test_matching["confidence"],
    }
    if m.corr_trg_to_src is not None:
        key = f"{net.name}/{TRG_TO_SRC_SCORES}"
        rec.extra[key] = m.corr_trg_to_src[0].float().cpu().numpy()
        rec.extra_attrs[key] = {"scores": "fused-distribution-trg-to-src"}
        rec.corr_attrs["scores_trg_to_src"] = f"extra/{key}"
    for key, value in m.extra.items():
        rec.extra[f"{net.name}/{key}"] = np.asarray(value[0].float().cpu().numpy())
        rec.extra_attrs[f"{net.name}/{key}"] = {"channels": ["local", "context"]} if key.startswith("fusion_") else {}
    rec.flow, rec.flow_attrs, rec.confidence = {}, {}, {}
    return rec


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

    from core.io.stream import RecordWriter, iter_records

    dev = resolve_device(device)
    net = None
    filler = layer_filler(dev, f"refine --model {model}", quiet)
    with RecordWriter(output, history_line(), dtype=dtype, compression=compression) as writer, progress(quiet) as bar:
        task = bar.add_task(f"refine ({model})", total=None)
        for rec in iter_records(input):
            if net is None:
                net = build_refiner(model, record_backbone(rec), weights).to(dev).eval()
                if model_weights(weights) is None and not quiet:
                    err_console.print(f"semcorr: warning: --weights none: the {model} head is untrained", highlight=False)
            writer.write(refine_record(filler.fill(rec, net.required_layers, model, net.input_resize), net, dev))
            bar.advance(task)


def register(app: typer.Typer) -> None:
    app.command("refine", help=HELP)(handle_errors(refine_cmd))
