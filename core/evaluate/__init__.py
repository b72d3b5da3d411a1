"""Scoring correspondence methods on the standard benchmarks (``semcorr evaluate``).

* :mod:`.sources` — flows from a predictor or from precomputed records;
* :mod:`.scoring` — one pair under a protocol → its per-pair figures;
* :mod:`.results` — the per-pair JSON-lines file (resume, merge);
* :mod:`.engine` — the loop (:func:`evaluate`), selection (``limit``, ``shard``);
* :mod:`.summary` — per-category/subset tables, SPair-71k breakdown, curves;
* :mod:`.export`, :mod:`.plot` — JSON/CSV reports and the PCK-curve PNG;
* :mod:`.reports` — several report files written together, atomically.

Example::

    from semcorr.datasets import open_dataset
    from semcorr.protocols import get_protocol
    from semcorr.pipeline import build_predictor
    from semcorr.evaluate import evaluate

    protocol = get_protocol("pf-willow-kps")
    ds = open_dataset("pf-willow", "shared/data/pf-willow-dev", **protocol.options())
    run = evaluate(ds, protocol, predictor=build_predictor("nn"))
    run.summary["categories"]["car(G)"]["pck_pair"]["0.1"]
"""

from .engine import EvaluationRun, evaluate, parse_shard, run_from_results, select_indices
from .export import report_dict, write_csv, write_json
from .plot import draw_curves, run_curves, write_plot
from .reports import report_kind, write_reports
from .results import ResultsWriter, merge_results, read_results
from .scoring import score_pair
from .sources import PredictorSource, RecordFlows, mirror_flows
from .summary import summarize

__all__ = [
    "evaluate",
    "EvaluationRun",
    "parse_shard",
    "select_indices",
    "run_from_results",
    "report_dict",
    "write_json",
    "write_csv",
    "write_plot",
    "write_reports",
    "report_kind",
    "draw_curves",
    "run_curves",
    "ResultsWriter",
    "read_results",
    "merge_results",
    "score_pair",
    "PredictorSource",
    "RecordFlows",
    "mirror_flows",
    "summarize",
]
