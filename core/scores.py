"""Score volumes from features: the correlation every matcher starts from, optionally mutually filtered.

Below the models and the stages: :mod:`semcorr.pseudo_labels` (a model's teacher)
and :mod:`semcorr.pipeline` (``correlate``, the ``nn`` predictor) both read it.
"""

from __future__ import annotations

import torch

from .ncnet_consensus import mutual_matching as soft_mutual_matching
from .correlation import correlate


def correlate_scores(fa: list[torch.Tensor], fb: list[torch.Tensor], mutual_matching: bool = False, **correlation) -> torch.Tensor:
    """Features of both images (lists of ``(B, C_i, h_i, w_i)``) → scores ``(B, hA, wA, hB, wB)``.

    :func:`semcorr.correlation.correlate` (``correlation``: its ``mode``,
    ``normalize``, ``relu``, ``center``), then optionally NC-Net's soft mutual
    nearest-neighbour filter (negative scores clamped first).
    """
    corr = correlate(fa, fb, **correlation)
    if mutual_matching:
        corr = soft_mutual_matching(corr.clamp_min(0))
    return corr


__all__ = ["correlate_scores"]
