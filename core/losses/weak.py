"""The weakly supervised matching loss of NC-Net and DCCNet.

Training needs only image pairs of the same class (positives); negatives are
made by pairing each source image with another item's target. The loss is::

    score(negatives) − score(positives)

where ``score`` is the mean, over every cell of both images, of the cell's
best matching probability — scores softmax-normalised over all positions of
the other image (NC-Net's ``weak_loss`` with ``normalization='softmax'``).
Minimising it makes matches of true pairs sharp and those of false pairs flat.

Shapes: correlations ``(B, hA, wA, hB, wB)``; per-pair scores ``(B,)``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..ncnet_consensus import softmax_over_target
from ..correlation import _check_corr, transpose_corr


#: Below this batch size :func:`negative_pairs` pairs every item with itself and the loss is exactly 0.
MIN_BATCH_SIZE = 2


def negative_pairs(x: torch.Tensor) -> torch.Tensor:
    """Pair every item with the previous one's partner: ``x.roll(1, 0)`` along the batch."""
    return x.roll(1, 0)


def mean_best_probability(prob: torch.Tensor) -> torch.Tensor:
    """Mean over source cells of each cell's largest probability.

    prob ``(B, hA, wA, hB, wB)``, a distribution over target cells for every
    source cell → ``(B,)``.
    """
    _check_corr(prob)
    b = prob.shape[0]
    return prob.reshape(b, prob.shape[1] * prob.shape[2], -1).max(dim=-1).values.mean(dim=1)


def matching_score(corr: torch.Tensor) -> torch.Tensor:
    """NC-Net's matching score of a correlation, per pair.

    corr ``(B, hA, wA, hB, wB)`` → ``(B,)``: the mean best probability of the
    source cells (softmax over the target) and of the target cells (softmax
    over the source), averaged.
    """
    return 0.5 * (
        mean_best_probability(softmax_over_target(corr)) + mean_best_probability(softmax_over_target(transpose_corr(corr)))
    )


def matching_score_of_distributions(prob_src_to_trg: torch.Tensor, prob_trg_to_src: torch.Tensor) -> torch.Tensor:
    """Matching score of scores that are already distributions (DCCNet's fused output).

    prob_src_to_trg ``(B, hA, wA, hB, wB)`` (sums to 1 over the target),
    prob_trg_to_src ``(B, hB, wB, hA, wA)`` (sums to 1 over the source) → ``(B,)``.
    """
    return 0.5 * (mean_best_probability(prob_src_to_trg) + mean_best_probability(prob_trg_to_src))


def weak_loss(
    positive: Mapping[str, torch.Tensor],
    negative: Mapping[str, torch.Tensor],
    weights: Mapping[str, float] | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Combine per-branch matching scores into the weak loss.

    positive / negative: ``{branch: (B,) scores}`` of the true and the false
    pairs; weights: ``{branch: factor}`` (1.0 for branches not listed).
    Returns ``(Σ_b w_b · (mean(neg_b) − mean(pos_b)), logs)`` with logs
    ``loss``, ``<branch>_pos``, ``<branch>_neg`` as floats.
    """
    if set(positive) != set(negative) or not positive:
        raise ValueError(f"positive and negative scores must name the same branches: {sorted(positive)} vs {sorted(negative)}")
    weights = dict(weights or {})
    total = None
    logs: dict[str, float] = {}
    for name in positive:
        pos, neg = positive[name].mean(), negative[name].mean()
        term = weights.get(name, 1.0) * (neg - pos)
        total = term if total is None else total + term
        logs[f"{name}_pos"] = float(pos.detach())
        logs[f"{name}_neg"] = float(neg.detach())
    assert total is not None
    logs["loss"] = float(total.detach())
    return total, logs
