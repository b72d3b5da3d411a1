"""Writing a run's figures: a JSON report and a long-format CSV, both carrying the full protocol."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

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
        "summary": run.summary,
    }
    if run.skipped:  # left out as bad (evaluate's skip_bad): not in the figures
        report["skipped"] = [{"index": b.index, "problem": b.message} for b in run.skipped]
    return report


def write_json(path: str | Path, run: EvaluationRun) -> None:
    """The report as indented JSON (figures in percent)."""
    Path(path).write_text(json.dumps(report_dict(run), indent=2, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")


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


def write_csv(path: str | Path, run: EvaluationRun) -> None:
    """Long-format CSV: ``section,group,metric,alpha,value,n_pairs,n_keypoints`` (values in percent),
    preceded by ``protocol`` rows (one per protocol field, JSON-encoded value) and ``run`` rows."""
    s = run.summary
    rows: list[list[Any]] = []
    for k, v in run.header["protocol"].items():
        rows.append(["protocol", k, "", "", json.dumps(v), "", ""])
    for k in ("dataset", "source", "selection"):
        rows.append(["run", k, "", "", json.dumps(run.header.get(k), sort_keys=True), "", ""])
    rows.append(["run", "pairs_scored", "", "", len(run.records), "", ""])
    rows += {"keypoints": _rows_keypoints, "propagation": _rows_keypoints, "flow": _rows_flow, "mask": _rows_mask, "coseg": _rows_coseg}[s["task"]](s)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["section", "group", "metric", "alpha", "value", "n_pairs", "n_keypoints"])
        for r in rows:
            w.writerow(["" if v is None else v for v in r])


__all__ = ["report_dict", "write_json", "write_csv"]
