"""The ``correlate`` stage: features records → records with the 4D correlation ``corr``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from ..io.records import PairRecord
from ..scores import correlate_scores
from .features import record_features, to_numpy


def correlate_record(
    rec: PairRecord,
    layers: list[str] | None = None,
    mode: str = "hypercolumn",
    normalize: bool = True,
    relu: bool = False,
    keep_features: bool = False,
    device: torch.device | str = "cpu",
    center: bool = False,
    mutual_matching: bool = False,
) -> PairRecord:
    """Add ``corr`` ``(h_src, w_src, h_trg, w_trg)`` computed from the record's features.

    ``mutual_matching`` re-weights the scores with NC-Net's soft mutual
    nearest-neighbour filter (negative scores clamped first).
    """
    fa, fb, layers = record_features(rec, layers, device, "correlate")
    corr = correlate_scores(fa, fb, mutual_matching, mode=mode, normalize=normalize, relu=relu, center=center)
    rec.corr = to_numpy(corr[0])
    rec.corr_attrs = {
        "method": mode,
        "layers": layers,
        "l2_normalized": bool(normalize),
        "centered": bool(center),
        "mutual_matching": bool(mutual_matching),
        "relu": bool(relu),
        "backbone": rec.feature_attrs.get(layers[0], {}).get("backbone", "unknown"),
    }
    if not keep_features:
        rec.features = {"src": {}, "trg": {}}
        rec.feature_attrs = {}
    return rec


def correlate_records(records: Iterable[PairRecord], **options) -> Iterator[PairRecord]:
    """:func:`correlate_record` on every record of a stream (``options``: its keyword arguments)."""
    for rec in records:
        yield correlate_record(rec, **options)
