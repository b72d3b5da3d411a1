"""NC-Net (Rocco et al., "Neighbourhood Consensus Networks", NeurIPS 2018).

Pipeline: backbone features of both images → L2 normalisation (eps 1e-6) →
raw 4D correlation → MutualMatching → NeighConsensus → MutualMatching
(:class:`semcorr.ncnet_consensus.ConsensusRefinement`) → matches in both directions.

Backbone layer: ResNet-101 ``layer3`` (stride 16, 1024 channels) as
published; with MobileNetV2 the stride-16 output ``features.13`` (96
channels). At the default 400 px input both give a 25 × 25 grid; any input
size works.

What NC-Net shares with DCCNet (feature layer, frozen or partly fine-tuned
backbone, weak loss, the authors' layout, the builder) is
:class:`semcorr.models.weak_consensus.WeakConsensusModel`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch

from ..ncnet_consensus import softmax_over_target
from ..flow import argmax_matches
from ..losses.weak import matching_score
from .base import Matches, matches_from_scores
from .weak_consensus import WeakConsensusModel, best_probability, build_weak_model


# ----------------------------------------------------------------------------- NC-Net


class NCNet(WeakConsensusModel):
    """NC-Net: features → raw correlation → MutualMatching → NeighConsensus → MutualMatching.

    ``head`` returns :class:`Matches` with ``corr`` the refined correlation
    ``(B, hA, wA, hB, wB)``, argmax matches in both directions (for each
    source cell its best target cell and vice versa) and, as confidences, the
    best softmax probability of every cell.
    """

    name: ClassVar[str] = "ncnet"
    loss_weights: ClassVar[dict[str, float]] = {"ncnet": 1.0}

    def correlation(self, feats_src: dict[str, torch.Tensor], feats_trg: dict[str, torch.Tensor]) -> torch.Tensor:
        """Refined correlation ``(B, hA, wA, hB, wB)``."""
        return self.refine(self.raw_correlation(self.layer_features(feats_src), self.layer_features(feats_trg)))

    def head(self, feats_src: dict[str, torch.Tensor], feats_trg: dict[str, torch.Tensor]) -> Matches:
        return matches_from_scores(
            self.correlation(feats_src, feats_trg), argmax_matches, lambda c: best_probability(softmax_over_target(c))
        )

    def branch_scores(self, feats_src, feats_trg):
        return {"ncnet": matching_score(self.correlation(feats_src, feats_trg))}



def build_ncnet(
    backbone: str = "mobilenet_v2",
    backbone_weights: str = "default",
    weights: str | Path | None = None,
    **options: Any,
) -> NCNet:
    """NC-Net. Options: ``layer`` (default: the backbone's stride-16 layer),
    ``ncons_kernel_sizes`` (5, 5, 5), ``ncons_channels`` (16, 16, 1),
    ``symmetric`` (True), ``finetune_blocks`` (0: frozen backbone),
    ``hypercolumn`` (layers to concatenate on the feature layer's grid, e.g.
    ``features.6,features.10,features.13,features.16``; default none: the
    feature layer alone, as published) and ``center`` (False: subtract each
    channel's image mean before normalising).
    """
    return build_weak_model(NCNet, backbone, backbone_weights, weights, options)  # type: ignore[return-value]
