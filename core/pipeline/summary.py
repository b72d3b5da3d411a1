"""The ``inspect`` stage: what a records file or stream holds, as plain data."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..io.records import PairRecord


def record_summary(rec: PairRecord) -> dict[str, Any]:
    """One record: its pair, stage, images and sizes, and every dataset as ``name: [shape, dtype]``."""
    out: dict[str, Any] = {
        "pair_id": rec.pair_id,
        "stage": rec.stage,
        "src_path": rec.src_path,
        "trg_path": rec.trg_path,
        "src_size": list(rec.src_size),
        "trg_size": list(rec.trg_size),
        "datasets": {},
    }
    datasets = out["datasets"]
    for side in ("src", "trg"):
        for layer, arr in rec.features[side].items():
            datasets[f"features/{side}/{layer}"] = [list(arr.shape), str(arr.dtype)]
    if rec.corr is not None:
        datasets["corr"] = [list(rec.corr.shape), str(rec.corr.dtype)]
    for group, arrays in (("flow", rec.flow), ("confidence", rec.confidence), ("extra", rec.extra)):
        for k, arr in arrays.items():
            datasets[f"{group}/{k}"] = [list(arr.shape), str(arr.dtype)]
    return out


def summarise_records(records: Iterable[PairRecord]) -> dict[str, Any]:
    """A stream: ``{"pairs": [record_summary, ...], "history": the last record's history, "count": N}``."""
    pairs: list[dict[str, Any]] = []
    history: list[str] = []
    for rec in records:
        pairs.append(record_summary(rec))
        history = rec.history
    return {"pairs": pairs, "history": history, "count": len(pairs)}
