"""Writing a run's figures: a JSON report and a long-format CSV, both carrying the full protocol."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from ..files import atomic_write_text
from .engine import EvaluationRun


def report_dict(run: EvaluationRun) -> dict[str, Any]:
    """Everything about a run except the per-pair records: protocol, dataset, source, selection, figures."""
    h = run.header
    report: dict[str, Any] = {
        "protocol": h["protocol"],
        "dataset": h["dataset"],
        "source": h.get("source"),
        "selection": h.get("selection"),
        "pairs_total": h.get("pairs_total"),
        "pairs_scored": len(run.records),
        **({"coverage": h["coverage"]} if "coverage" in h else {}),
        "summary": run.summary,
    }
    if run.skipped:  # left out as bad (evaluate's skip_bad): not in the figures
        report["skipped"] = [{"index": b.index, "problem": b.message} for b in run.skipped]
    return report


def run_label(header: dict[str, Any]) -> str:
    """What was scored, for titles: the model (with its weights file) or the flows file, and the part of the pairs.

    e.g. ``ncnet (last.safetensors), shard 2/4`` or ``flows f.h5, merged 3 files (partial)``.
    """
    source = header.get("source") or {}
    if "flows" in source:
        what = f"flows {Path(str(source['flows'])).name}"
    else:
        what = str(source.get("model") or source.get("predictor") or "model")
        weights = str(source.get("weights") or "")
        if weights.startswith(("file:", "official-file:", "released-file:")):
            what += f" ({weights.split(':')[1]})"
    sel = header.get("selection") or {}
    parts = [what]
    if sel.get("shard"):
        parts.append(f"shard {sel['shard'][0]}/{sel['shard'][1]}")
    if sel.get("limit"):
        parts.append(f"first {sel['limit']} pairs")
    if sel.get("merged"):
        complete = (header.get("coverage") or {}).get("complete", True)
        parts.append(f"merged {len(sel['merged'])} files" + ("" if complete else " (partial)"))
    return ", ".join(parts)


def json_report(run: EvaluationRun) -> str:
    """The report as indented JSON (figures in percent)."""
    return json.dumps(report_dict(run), indent=2, sort_keys=True, allow_nan=False) + "\n"


def write_json(path: str | Path, run: EvaluationRun) -> None:
    """:func:`json_report` written atomically."""
    atomic_write_text(path, json_report(run))


def _rows_keypoints(s: dict[str, Any]) -> list[list[Any]]:
    rows = []

    def block(section: str, group: str, b: dict[str, Any]) -> None:
        for field in ("pck_pair", "pck_keypoint", "pck_joint"):
            for a, v in b.get(field, {}).items():
                rows.append([section, group, field, a, v, b.get("n_pairs"), b.get("n_keypoints")])

    block("overall", "all", s["overall"])
    for c, b in s["categories"].items():
        block("category", c, b)
    block("category_mean", "all", dict(s["category_mean"], n_pairs=s["overall"]["n_pairs"]))
    for factor, levels in s.get("breakdown", {}).items():
        for level, b in levels.items():
            block(factor, level, b)
    for factor, levels in s.get("breakdown_controlled", {}).items():
        for level, b in levels.items():
            block(f"{factor} alone", level, b)
    for j, b in enumerate(s.get("joints", [])):
        for a, v in b.items():
            rows.append(["joint", str(j + 1), "pck_keypoint", a, v, s["overall"]["n_pairs"], None])
    for field in ("pck_pair", "pck_keypoint"):
        for a, v in zip(s["curve"]["alphas"], s["curve"][field]):
            rows.append(["curve", "all", field, f"{a:g}", v, s["overall"]["n_pairs"], s["overall"]["n_keypoints"]])
    return rows


def _rows_flow(s: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for subset, b in list(s["subsets"].items()) + [("all", s["overall"])]:
        for field in ("pck", "src_to_trg", "trg_to_src"):
            for a, v in b[field].items():
                rows.append(["subset" if subset != "all" else "overall", subset, field, a, v, b["n_pairs"], None])
    for a, v in s["average"]["pck"].items():
        rows.append(["subset_mean", "all", "pck", a, v, s["overall"]["n_pairs"], None])
    for a, v in zip(s["curve"]["alphas"], s["curve"]["pck"]):
        rows.append(["curve", "all", "pck", f"{a:g}", v, s["overall"]["n_pairs"], None])
    return rows


def _rows_mask(s: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for group, b in [("all", s["overall"])] + list(s["categories"].items()):
        for field in ("lt_acc", "iou"):
            rows.append(["overall" if group == "all" else "category", group, field, None, b[field], b["n_pairs"], None])
    return rows


def _rows_coseg(s: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for group, b in list(s["subsets"].items()) + [("all", s["overall"])]:
        for field in ("iou", "iou_src", "iou_trg"):
            rows.append(["overall" if group == "all" else "subset", group, field, None, b[field], b["n_pairs"], None])
    rows.append(["subset_mean", "all", "iou", None, s["average"]["iou"], s["overall"]["n_pairs"], None])
    return rows

def plain_cell(value: Any) -> str:
    """A CSV cell a spreadsheet reads as it is: text unquoted, ``true``/``false``, lists joined by ``;``, none empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ";".join(plain_cell(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def flat_items(value: Any, prefix: str) -> list[tuple[str, Any]]:
    """``{"a": {"b": 1}, "c": 2}`` under ``prefix`` ``"x"`` → ``[("x.a.b", 1), ("x.c", 2)]`` (sorted keys)."""
    if not isinstance(value, dict):
        return [(prefix, value)]
    out = []
    for k in sorted(value):
        out += flat_items(value[k], f"{prefix}.{k}")
    return out


def csv_report(run: EvaluationRun) -> str:
    """Long-format CSV: ``section,group,metric,alpha,value,n_pairs,n_keypoints`` (values in percent),
    preceded by ``protocol`` rows (one per protocol field) and ``run`` rows (one per field of the
    dataset, source and selection descriptions, e.g. ``source.model``), every cell plain (:func:`plain_cell`)."""
    s = run.summary
    rows: list[list[Any]] = []
    for k, v in run.header["protocol"].items():
        rows.append(["protocol", k, "", "", plain_cell(v), "", ""])
    for k in ("dataset", "source", "selection", "coverage"):
        if k in run.header:
            rows += [["run", name, "", "", plain_cell(v), "", ""] for name, v in flat_items(run.header.get(k), k)]
    rows.append(["run", "pairs_scored", "", "", len(run.records), "", ""])
    rows += {"keypoints": _rows_keypoints, "propagation": _rows_keypoints, "flow": _rows_flow, "mask": _rows_mask, "coseg": _rows_coseg}[s["task"]](s)
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(["section", "group", "metric", "alpha", "value", "n_pairs", "n_keypoints"])
    for r in rows:
        w.writerow(["" if v is None else v for v in r])
    return buf.getvalue()


def write_csv(path: str | Path, run: EvaluationRun) -> None:
    """:func:`csv_report` written atomically."""
    atomic_write_text(path, csv_report(run))


__all__ = ["report_dict", "run_label", "plain_cell", "json_report", "csv_report", "write_json", "write_csv"]
