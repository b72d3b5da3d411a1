"""DCCNet (Huang et al., "Dynamic Context Correspondence Network for Semantic Alignment", ICCV 2019).

Two correlations of the same image pair, refined by one weight-shared NC-Net
consensus (MutualMatching → NeighConsensus → MutualMatching):

* **local**: correlation of the L2-normalised backbone features (as NC-Net);
* **context**: correlation of the raw (un-normalised) outputs of the spatial
  context encoder (:class:`semcorr.dccnet_context.SpatialContextEncoder`: each
  L2-normalised feature with its 25 × 25 window self-similarity, embedded by a
  1×1 conv + ReLU), as the public code's ``FeatureCorrelation(normalization=False)``
  on the encoder output.

:class:`semcorr.dccnet_context.DynamicFusion` then weighs the two per position: the
fused score of a source cell is ``Σ_s w_s · softmax_B(corr_s)``, a
distribution over target cells, and likewise from the target side.

Backbone layer as NC-Net's (ResNet-101 ``layer3``; MobileNetV2
``features.13``); the context embedding keeps the backbone's channel count
(1024 for ResNet-101 as published, 96 for MobileNetV2).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from ..backbones import FeatureBackbone, layer_table
from ..ncnet_consensus import PF_PASCAL_CHANNELS, PF_PASCAL_KERNEL_SIZES
from ..dccnet_context import DEFAULT_CONTEXT_KERNEL, DEFAULT_FUSION_GRID, DynamicFusion, SpatialContextEncoder
from ..correlation import correlation_4d, l2_normalize
from ..errors import WeightsError
from ..flow import argmax_matches
from ..losses.weak import matching_score, matching_score_of_distributions
from ..parsing import parse_int_list
from .base import Matches
from .weak_consensus import WeakConsensusModel, best_probability, build_weak_model
from .official import OfficialCheckpoint, conv4d_weight_from_official, modules_in_order


class DCCNet(WeakConsensusModel):
    """DCCNet: local and context correlations, one shared consensus, dynamic fusion.

    ``head`` returns :class:`Matches` with ``corr`` the fused source→target
    scores ``(B, hA, wA, hB, wB)`` (each source cell's distribution over the
    target), ``corr_trg_to_src`` the fused target→source scores
    ``(B, hB, wB, hA, wA)`` (the public code's second merge, ``MergedB``: not
    the transpose of the first), argmax matches from the fused scores of each direction, the best
    fused probabilities as confidences, and in ``extra`` the per-cell weights
    of the (local, context) branches: ``fusion_src_to_trg`` ``(B, 2, hA, wA)``
    and ``fusion_trg_to_src`` ``(B, 2, hB, wB)``. :meth:`fused` returns every
    intermediate (branch correlations, fused scores of both directions).
    """

    name: ClassVar[str] = "dccnet"
    #: An NC-Net checkpoint gives DCCNet its shared consensus (:func:`~semcorr.models.weak_consensus.load_consensus_weights`).
    accepts_checkpoints_of: ClassVar[tuple[str, ...]] = ("ncnet",)
    #: The paper's objective: fused loss + 1.0 × local + 1.0 × context.
    loss_weights: ClassVar[dict[str, float]] = {"fused": 1.0, "local": 1.0, "context": 1.0}
    #: The fused scores are already distributions: their best value is the confidence.
    test_matching: ClassVar[dict[str, str]] = {"method": "argmax", "confidence": "max"}

    def __init__(
        self,
        backbone: FeatureBackbone,
        backbone_weights: str = "default",
        context_kernel_size: int = DEFAULT_CONTEXT_KERNEL,
        context_channels: int | None = None,
        fusion_kernel_sizes: Sequence[int] = PF_PASCAL_KERNEL_SIZES,
        fusion_channels: Sequence[int] = PF_PASCAL_CHANNELS,
        fusion_grid: int | Sequence[int] = DEFAULT_FUSION_GRID,
        **consensus_options: Any,
    ):
        """``consensus_options``: NC-Net's (:class:`~semcorr.models.weak_consensus.WeakConsensusModel`)."""
        super().__init__(backbone, backbone_weights, **consensus_options)
        channels = self.feature_channels
        self.context_kernel_size = int(context_kernel_size)
        self.context_channels = int(context_channels or channels)
        self.fusion_kernel_sizes = parse_int_list(fusion_kernel_sizes, "fusion_kernel_sizes")
        self.fusion_channels = parse_int_list(fusion_channels, "fusion_channels")
        grid = parse_int_list(fusion_grid, "fusion_grid")
        self.fusion_grid = (grid[0], grid[0]) if len(grid) == 1 else (grid[0], grid[1])
        self.context = SpatialContextEncoder(channels, self.context_kernel_size, self.context_channels)
        self.fusion = DynamicFusion(self.fusion_kernel_sizes, self.fusion_channels, self.fusion_grid, self.symmetric)

    # -- pipeline --------------------------------------------------------------------------------

    def context_correlation(self, feat_src: torch.Tensor, feat_trg: torch.Tensor) -> torch.Tensor:
        """Correlation of the context embeddings, not normalised: ``(B, hA, wA, hB, wB)``.

        The encoder reads the L2-normalised backbone features, as the public
        code's ``FeatureExtraction(normalization=True)`` hands them over; its
        outputs are correlated as they are (``FeatureCorrelation(normalization=False)``
        in the public model), so their magnitudes reach the consensus.
        """
        ctx_src = self.context(l2_normalize(feat_src))
        ctx_trg = self.context(l2_normalize(feat_trg))
        return correlation_4d(ctx_src, ctx_trg)

    def branch_correlations(
        self, feats_src: dict[str, torch.Tensor], feats_trg: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Refined ``(local, context)`` correlations, each ``(B, hA, wA, hB, wB)``, one shared consensus."""
        fa, fb = self.layer_features(feats_src), self.layer_features(feats_trg)
        local = self.raw_correlation(fa, fb)
        context = self.context_correlation(fa, fb)
        b = local.shape[0]
        refined = self.refine(torch.cat([local, context], dim=0))  # shared weights: one batched pass
        return refined[:b], refined[b:]

    def fused(self, feats_src, feats_trg) -> dict[str, torch.Tensor]:
        """Every intermediate of the head: ``local``, ``context``, ``fused_src_to_trg``,
        ``fused_trg_to_src``, ``fusion_src_to_trg``, ``fusion_trg_to_src`` (shapes as in the class doc)."""
        local, context = self.branch_correlations(feats_src, feats_trg)
        fused_src, fused_trg, w_src, w_trg = self.fusion(local, context)
        return {
            "local": local,
            "context": context,
            "fused_src_to_trg": fused_src,
            "fused_trg_to_src": fused_trg,
            "fusion_src_to_trg": w_src,
            "fusion_trg_to_src": w_trg,
        }

    def head(self, feats_src: dict[str, torch.Tensor], feats_trg: dict[str, torch.Tensor]) -> Matches:
        out = self.fused(feats_src, feats_trg)
        return Matches(
            src_to_trg=argmax_matches(out["fused_src_to_trg"]),
            trg_to_src=argmax_matches(out["fused_trg_to_src"]),
            corr=out["fused_src_to_trg"],
            corr_trg_to_src=out["fused_trg_to_src"],
            confidence_src=best_probability(out["fused_src_to_trg"]),
            confidence_trg=best_probability(out["fused_trg_to_src"]),
            extra={"fusion_src_to_trg": out["fusion_src_to_trg"], "fusion_trg_to_src": out["fusion_trg_to_src"]},
        )

    def branch_scores(self, feats_src, feats_trg) -> dict[str, torch.Tensor]:
        out = self.fused(feats_src, feats_trg)
        return {
            "fused": matching_score_of_distributions(out["fused_src_to_trg"], out["fused_trg_to_src"]),
            "local": matching_score(out["local"]),
            "context": matching_score(out["context"]),
        }

    # -- authors' checkpoints ------------------------------------------------------------------------

    @classmethod
    def _official_fusion(cls, ckpt: OfficialCheckpoint) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]:
        """The ``DynamicFusionNet`` block: ``([(conv4d weight, bias) …], (attention weight, bias))``.

        Read by structure, not by name: its modules in stored order, those with
        6-D weights being the embedding's Conv4d layers (stored permuted) and
        the one 4-D ``(2, 2·g², 1, 1)`` weight the attention conv.
        """
        convs, attention = [], []
        for module, params in modules_in_order(ckpt.keys_under("DynamicFusionNet.")):
            w, b = params.get("weight"), params.get("bias")
            if w is None or b is None:
                raise WeightsError(f"'{ckpt.path}': DynamicFusionNet.{module} lacks a weight or a bias")
            if w.dim() == 6:
                convs.append((conv4d_weight_from_official(w), b))
            elif w.dim() == 4 and w.shape[0] == 2 and w.shape[2:] == (1, 1):
                attention.append((w, b))
            else:
                raise WeightsError(f"'{ckpt.path}': unexpected DynamicFusionNet.{module}.weight of shape {tuple(w.shape)}")
        if not convs or len(attention) != 1:
            raise WeightsError(
                f"'{ckpt.path}' holds no DCCNet dynamic fusion (found {len(convs)} Conv4d layers and "
                f"{len(attention)} attention convs under 'DynamicFusionNet.'); is it an NC-Net checkpoint?"
            )
        return convs, attention[0]

    @classmethod
    def official_options(cls, ckpt: OfficialCheckpoint) -> tuple[str, dict[str, Any]]:
        backbone, options = super().official_options(ckpt)
        sce = ckpt.keys_under("SpatialContextEncoder.embeddingFea.0.")
        if "weight" not in sce:
            raise WeightsError(f"'{ckpt.path}' holds no spatial context encoder: not a DCCNet checkpoint")
        convs, (att_w, _) = cls._official_fusion(ckpt)
        grid = round((att_w.shape[1] / 2) ** 0.5)
        if 2 * grid * grid != att_w.shape[1]:
            raise WeightsError(f"'{ckpt.path}': the fusion conv reads {att_w.shape[1]} channels, not 2 × a square grid")
        options.update(
            context_channels=int(sce["weight"].shape[0]),
            fusion_kernel_sizes=[int(w.shape[2]) for w, _ in convs],
            fusion_channels=[int(w.shape[0]) for w, _ in convs],
            fusion_grid=[grid, grid],
        )
        feature_channels = layer_table(backbone)[options["layer"]][0]
        window = int(sce["weight"].shape[1]) - feature_channels  # the encoder reads C + k² channels
        k = round(max(window, 0) ** 0.5)
        if k * k != window or k % 2 == 0:
            raise WeightsError(
                f"'{ckpt.path}': its context encoder reads {sce['weight'].shape[1]} channels, "
                f"not {feature_channels} features + an odd k × k window"
            )
        options["context_kernel_size"] = k
        for arg, key in (
            ("sce_kernel_size", "context_kernel_size"),
            ("sce_hidden_dim", "context_channels"),
            ("att_scale_ncons_kernel_sizes", "fusion_kernel_sizes"),
            ("att_scale_ncons_channels", "fusion_channels"),
        ):
            if arg in ckpt.args and ckpt.args[arg] is not None:
                given = ckpt.args[arg]
                given = parse_int_list(given, arg) if isinstance(options[key], list) else int(given)
                if given != options[key]:
                    raise WeightsError(f"'{ckpt.path}': its args say {arg}={ckpt.args[arg]} but its weights have {options[key]}")
        return backbone, options

    @classmethod
    def official_head_state(cls, ckpt: OfficialCheckpoint) -> dict[str, torch.Tensor]:
        state = super().official_head_state(ckpt)
        sce = ckpt.keys_under("SpatialContextEncoder.embeddingFea.0.")
        state["context.embedding.0.weight"] = sce["weight"]
        state["context.embedding.0.bias"] = sce["bias"]
        convs, (att_w, att_b) = cls._official_fusion(ckpt)
        for i, (w, b) in enumerate(convs):
            state[f"fusion.embed.conv.{2 * i}.weight"] = w
            state[f"fusion.embed.conv.{2 * i}.bias"] = b
        state["fusion.attention.weight"] = att_w
        state["fusion.attention.bias"] = att_b
        return state


def build_dccnet(
    backbone: str = "mobilenet_v2",
    backbone_weights: str = "default",
    weights: str | Path | None = None,
    **options: Any,
) -> DCCNet:
    """DCCNet. Options: NC-Net's (``layer``, ``ncons_kernel_sizes`` (5, 5, 5),
    ``ncons_channels`` (16, 16, 1), ``symmetric``, ``finetune_blocks``) and
    ``context_kernel_size`` (25), ``context_channels`` (the backbone's),
    ``fusion_kernel_sizes`` (5, 5, 5), ``fusion_channels`` (16, 16, 1),
    ``fusion_grid`` (25: the 1×1 fusion conv reads 2 × 25 × 25 channels),
    ``hypercolumn`` and ``center`` (see :func:`semcorr.models.ncnet.build_ncnet`).
    """
    return build_weak_model(DCCNet, backbone, backbone_weights, weights, options)  # type: ignore[return-value]
