"""The evaluation loop: select pairs, get their flows, score them, record them, summarise.

``evaluate(dataset, protocol, predictor=…)`` or ``evaluate(dataset, protocol,
flows=RecordFlows(…))`` runs over the pairs chosen by ``limit`` (the first N)
and ``shard`` (every n-th pair starting at i − 1, ``i`` in 1..n), writes each
pair's figures to ``results`` as it goes (``resume`` skips the pairs already
there), and returns an :class:`EvaluationRun` with the records and summary.

Every chosen pair is checked before any work (its annotations read, its
images' headers, :meth:`semcorr.datasets.base.PairDataset.bad_pairs`): bad pairs
stop the run before it starts (:class:`semcorr.checks.BadRowsError`, naming each
by file and row), or with ``skip_bad`` are left out and listed in
``run.skipped``, as is a pair that fails later, when it is scored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..checks import BadRow, BadRowsError
from ..errors import DataError, UsageError, param
from ..protocols import Protocol
from .results import ResultsWriter, make_header
from .scoring import score_item
from .sources import PredictorSource, RecordFlows
from .summary import summarize


@dataclass
class EvaluationRun:
    """A finished (or merged) run: its header (dataset, protocol, source, selection), per-pair records and summary."""

    header: dict[str, Any]
    records: list[dict[str, Any]]
    summary: dict[str, Any]
    resumed: int = 0
    #: The pairs left out as bad (:class:`semcorr.checks.BadRow`), with ``skip_bad``.
    skipped: list[BadRow] = field(default_factory=list)

    @property
    def protocol(self) -> Protocol:
        return Protocol.from_dict(self.header["protocol"])


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/n"`` (``1 ≤ i ≤ n``) → ``(i, n)``; None stays None."""
    if text is None:
        return None
    try:
        i, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise UsageError(f"{param('shard')} must look like i/n (e.g. 1/4), not '{text}'") from None
    if n < 1 or not 1 <= i <= n:
        raise UsageError(f"{param('shard')} {text}: i must be between 1 and n")
    return i, n


def select_indices(n_pairs: int, limit: int | None = None, shard: tuple[int, int] | None = None) -> list[int]:
    """The pair indices a run covers: the first ``limit`` pairs, then every n-th from ``i − 1``."""
    if limit is not None and limit < 1:
        raise UsageError(f"{param('limit')} must be at least 1, not {limit}")
    idx = list(range(min(n_pairs, limit) if limit is not None else n_pairs))
    if shard is not None:
        i, n = shard
        idx = idx[i - 1 :: n]
    return idx


def check_protocol(dataset, protocol: Protocol) -> None:
    """A protocol scores only the dataset (and task) it was defined for."""
    if protocol.dataset != dataset.name:
        raise UsageError(f"protocol '{protocol.name}' is for {protocol.dataset}, not {dataset.name}")
    if protocol.task not in (dataset.task, *getattr(dataset, "tasks", ())):
        raise UsageError(f"protocol '{protocol.name}' scores {protocol.task} but {dataset.name} provides {dataset.task}")


def _pair_record(index: int, pair, figures: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in pair.meta.items() if isinstance(v, (str, int, float, bool)) and k != "coords"}
    return {"index": index, "pair_id": pair.pair_id, "category": pair.category, "src": pair.src_name, "trg": pair.trg_name, "meta": meta, **figures}


def evaluate(
    dataset,
    protocol: Protocol,
    predictor: Any = None,
    flows: RecordFlows | None = None,
    results: str | Path | None = None,
    resume: bool = False,
    limit: int | None = None,
    shard: tuple[int, int] | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_pair: Callable[[dict[str, Any]], None] | None = None,
    skip_bad: bool = False,
    bad: list[BadRow] | None = None,
) -> EvaluationRun:
    """Score ``dataset`` under ``protocol`` with flows from ``predictor`` or ``flows`` (exactly one).

    ``on_start(total, already_done)`` and ``on_pair(record)`` report progress.
    ``skip_bad``: leave bad pairs out (see the module doc) instead of stopping;
    ``bad``: the result of :meth:`~semcorr.datasets.base.PairDataset.bad_pairs`
    on the chosen pairs when the caller has already checked them.
    """
    if (predictor is None) == (flows is None):
        raise UsageError("give either a predictor (a model) or precomputed flows, not both or neither")
    check_protocol(dataset, protocol)
    source = PredictorSource(predictor, protocol.flip) if predictor is not None else flows
    indices = select_indices(len(dataset), limit, shard)
    if bad is None:
        bad = dataset.bad_pairs(indices, images=predictor is not None)
    if bad and (not skip_bad or len(bad) == len(indices)):
        raise BadRowsError(bad, len(indices))
    skipped = list(bad)
    header = make_header(
        dataset.describe(),
        protocol.to_dict(),
        source.describe(),
        {"limit": limit, "shard": list(shard) if shard else None},
        len(indices),
    )
    writer = ResultsWriter(results, header, resume) if results is not None else None
    done: dict[int, dict[str, Any]] = dict(writer.done) if writer else {}
    if on_start:
        on_start(len(indices), sum(1 for i in indices if i in done))
    try:
        left_out = {b.index for b in skipped}
        for i in indices:
            if i in done or i in left_out:
                continue
            try:
                pair = dataset[i]
                record = _pair_record(i, pair, score_item(pair, source, protocol))
            except DataError as exc:  # e.g. an image truncated past its header
                late = BadRow(i, dataset.locate(dataset.entries[i], str(exc)))
                if not skip_bad:
                    raise DataError(late.message) from None
                skipped.append(late)
                continue
            done[i] = record
            if writer:
                writer.write(record)
            if on_pair:
                on_pair(record)
    finally:
        if writer:
            writer.close()
    records = [done[i] for i in indices if i in done]
    if not records and skipped:
        raise BadRowsError(skipped, len(indices))
    resumed = len(writer.done) if writer else 0
    return EvaluationRun(header, records, summarize(records, protocol), resumed, skipped)


def run_from_results(header: dict[str, Any], records: list[dict[str, Any]], alphas: list[float] | None = None) -> EvaluationRun:
    """An :class:`EvaluationRun` rebuilt from a results file (or merged files)."""
    protocol = Protocol.from_dict(header["protocol"])
    return EvaluationRun(header, records, summarize(records, protocol, alphas))


__all__ = ["evaluate", "EvaluationRun", "parse_shard", "select_indices", "run_from_results", "check_protocol"]
