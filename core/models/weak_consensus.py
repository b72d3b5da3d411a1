"""What NC-Net and DCCNet share: :class:`WeakConsensusModel` and its builder.

One stride-16 feature layer (optionally a hypercolumn on its grid), a frozen
or partly fine-tuned backbone, the NC-Net consensus refinement, the weak loss
of both papers, the authors' ``.pth.tar`` layout and the builder
(:func:`build_weak_model`) that resolves weights with
:func:`semcorr.models.pretrained.resolve`. The models themselves are
:mod:`semcorr.models.ncnet` and :mod:`semcorr.models.dccnet`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from ..backbones import FeatureBackbone, build_backbone
from ..ncnet_consensus import PF_PASCAL_CHANNELS, PF_PASCAL_KERNEL_SIZES, ConsensusRefinement
from ..correlation import center_features, correlation_4d, hypercolumn, l2_normalize
from ..errors import UsageError, WeightsError, param
from ..losses.weak import negative_pairs, weak_loss
from ..parsing import parse_int_list, parse_name_list
from .base import CorrespondenceModel, load_matching_shapes, load_resolved
from .official import (
    OfficialCheckpoint,
    feature_prefix,
    official_backbone_state,
    official_conv4d_stack,
    read_official_checkpoint,
    resnet_arch_of,
    torchvision_resnet_state,
)
from .pretrained import released_weights, resolve

#: The stride-16 feature layer each backbone uses (ResNet: as published).
FEATURE_LAYERS = {"mobilenet_v2": "features.13", "resnet50": "layer3", "resnet101": "layer3"}

#: Training defaults of the published NC-Net / DCCNet PF-PASCAL models.
WEAK_TRAIN_DEFAULTS: dict[str, Any] = {
    "optimizer": "adam",
    "lr": 5e-4,
    "batch_size": 16,
    "epochs": 5,
    "image_size": 400,
    "lr_schedule": None,
    "weight_decay": 0.0,
}



def default_feature_layer(backbone: str) -> str:
    if backbone not in FEATURE_LAYERS:
        raise UsageError(f"no feature layer is defined for backbone '{backbone}'")
    return FEATURE_LAYERS[backbone]



# ----------------------------------------------------------------------------- helpers


def best_probability(prob: torch.Tensor) -> torch.Tensor:
    """Largest probability of every source cell: ``(B, hA, wA, hB, wB)`` → ``(B, hA, wA)``."""
    b, ha, wa = prob.shape[:3]
    return prob.reshape(b, ha, wa, -1).max(dim=-1).values



# ----------------------------------------------------------------------------- shared model base


class WeakConsensusModel(CorrespondenceModel):
    """What NC-Net and DCCNet share: one stride-16 feature layer, consensus refinement, the weak loss.

    Subclasses implement ``branch_scores(feats_src, feats_trg) -> {branch: (B,)
    matching score}`` (see :mod:`semcorr.losses.weak`), used by :meth:`loss`,
    and :meth:`head`; they set :attr:`loss_weights`.
    """

    train_data: ClassVar[str] = "weak"
    train_defaults: ClassVar[dict[str, Any]] = dict(WEAK_TRAIN_DEFAULTS)
    input_size: int = 400
    #: ``{branch: factor}`` of the weak loss.
    loss_weights: ClassVar[dict[str, float]] = {}
    #: The matching rule of the authors' evaluation code (``corr_to_matches(do_softmax=True)``):
    #: a softmax over the other image's cells, then the argmax (the softmax leaves the argmax
    #: unchanged); the confidence is the best softmax probability. ``flow`` applies it to
    #: records this model refined (``semcorr.pipeline.flow_record``).
    test_matching: ClassVar[dict[str, str]] = {"method": "argmax", "confidence": "softmax"}

    def __init__(
        self,
        backbone: FeatureBackbone,
        backbone_weights: str = "default",
        layer: str | None = None,
        ncons_kernel_sizes: Sequence[int] = PF_PASCAL_KERNEL_SIZES,
        ncons_channels: Sequence[int] = PF_PASCAL_CHANNELS,
        symmetric: bool = True,
        finetune_blocks: int = 0,
        hypercolumn: Sequence[str] | str = (),
        center: bool = False,
    ):
        super().__init__()
        self.backbone = backbone
        self.backbone_weights = str(backbone_weights)
        self.layer = layer or default_feature_layer(backbone.name)
        backbone.resolve(self.layer)  # validates the name
        self.hypercolumn = parse_name_list(hypercolumn, "hypercolumn")
        for name in self.hypercolumn:
            backbone.resolve(name)
        self.center = bool(center)
        self.ncons_kernel_sizes = parse_int_list(ncons_kernel_sizes, "ncons_kernel_sizes")
        self.ncons_channels = parse_int_list(ncons_channels, "ncons_channels")
        self.symmetric = bool(symmetric)
        self.finetune_blocks = int(finetune_blocks)
        #: True when the backbone weights came from a checkpoint file: they are then saved with the head.
        self.backbone_in_checkpoint = False
        #: Where the head weights came from: ``"fresh"``, ``"file:<name>:<sha256[:12]>"`` (set by the builder).
        self.weights_id = "fresh"
        self.refine = ConsensusRefinement(self.ncons_kernel_sizes, self.ncons_channels, self.symmetric)
        self._unfreeze_last_blocks(self.finetune_blocks)

    # -- backbone ---------------------------------------------------------------------------

    def _unfreeze_last_blocks(self, n: int) -> None:
        """Make the last ``n`` backbone blocks up to the feature layer trainable (NC-Net's ``fe_finetune_params``)."""
        if n < 0:
            raise UsageError(f"finetune_blocks must be >= 0, got {n}")
        last = max(self.backbone.stage_names.index(self.backbone.resolve(name)) for name in self.required_layers)
        if n > last + 1:
            raise UsageError(f"the backbone has only {last + 1} blocks up to {self.layer}; cannot fine-tune {n}")
        for stage in self.backbone.stages[last + 1 - n : last + 1] if n else []:
            for p in stage.parameters():
                p.requires_grad_(True)

    @property
    def backbone_frozen(self) -> bool:
        return not any(p.requires_grad for p in self.backbone.parameters())

    @property
    def required_layers(self) -> list[str]:
        """The feature layer, then the hypercolumn's other layers (if any)."""
        return [self.layer] + [name for name in self.hypercolumn if name != self.layer]

    @property
    def feature_channels(self) -> int:
        """Channels of :meth:`layer_features`' output."""
        if self.hypercolumn:
            return sum(self.backbone.channels(name) for name in self.hypercolumn)
        return self.backbone.channels(self.layer)

    def features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Backbone features ``{layer: (B, C, h, w)}`` of ImageNet-normalised ``(B, 3, H, W)`` images."""
        if self.backbone_frozen:
            with torch.no_grad():
                return self.backbone(images, self.required_layers)
        return self.backbone(images, self.required_layers)

    def layer_features(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        """The features the correlation reads: ``{layer: (B, C_l, h_l, w_l)}`` → ``(B, C, h, w)``.

        As published: the feature layer itself (optionally centred). With
        ``hypercolumn`` layers: their per-layer (centred,) L2-normalised
        concatenation resampled to the feature layer's grid ``(h, w)``
        (:func:`semcorr.correlation.hypercolumn`), so the 4D volume keeps the
        stride-16 size while reading finer and coarser layers too.
        """
        missing = [name for name in self.required_layers if name not in feats]
        if missing:
            raise UsageError(f"{self.name} needs backbone features '{missing[0]}', got {', '.join(feats) or 'none'}")
        base = feats[self.layer]
        if self.hypercolumn:
            return hypercolumn([feats[name] for name in self.hypercolumn], size=tuple(base.shape[-2:]), center=self.center)
        return center_features(base) if self.center else base

    def head_state_dict(self) -> dict[str, torch.Tensor]:
        """Head weights, plus the backbone when it is fine-tuned or came from a checkpoint file."""
        if self.backbone_in_checkpoint:
            return dict(self.state_dict())
        return super().head_state_dict()

    # -- pipeline pieces ------------------------------------------------------------------------

    @staticmethod
    def raw_correlation(feat_src: torch.Tensor, feat_trg: torch.Tensor) -> torch.Tensor:
        """Correlation of L2-normalised features: ``(B, C, hA, wA)``, ``(B, C, hB, wB)`` → ``(B, hA, wA, hB, wB)``."""
        return correlation_4d(l2_normalize(feat_src), l2_normalize(feat_trg))

    # -- training ---------------------------------------------------------------------------------

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """The weak loss: score of false pairs − score of true pairs, summed over branches.

        batch: ``src_image``, ``trg_image`` ImageNet-normalised ``(B, 3, H, W)``.
        Negatives pair each source with the previous item's target
        (``trg_image.roll(1, 0)``); the backbone runs once per image (its
        features are rolled — the same as rolling the images, the backbone
        being in eval mode). With ``B = 1`` negatives equal positives.
        """
        for key in ("src_image", "trg_image"):
            if key not in batch:
                raise UsageError(f"a weak training batch needs '{key}'")
        feats_src, feats_trg = self.features(batch["src_image"]), self.features(batch["trg_image"])
        feats_neg = {k: negative_pairs(v) for k, v in feats_trg.items()}
        positive = self.branch_scores(feats_src, feats_trg)
        negative = self.branch_scores(feats_src, feats_neg)
        return weak_loss(positive, negative, self.loss_weights)

    # -- configuration --------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "backbone": self.backbone.name,
            "backbone_weights": "random" if self.backbone_in_checkpoint else self.backbone_weights,
            **self.recorded_options(),
        }

    # -- authors' checkpoints -------------------------------------------------------------------

    @classmethod
    def official_options(cls, ckpt: OfficialCheckpoint) -> tuple[str, dict[str, Any]]:
        """``(backbone, options)`` of the architecture an authors' checkpoint was trained with."""
        nc = official_conv4d_stack(ckpt.keys_under("NeighConsensus."), str(ckpt.path))
        weights = [v for k, v in nc.items() if k.endswith(".weight")]
        if not weights:
            raise WeightsError(f"'{ckpt.path}' holds no NeighConsensus weights: not an NC-Net/DCCNet checkpoint")
        options: dict[str, Any] = {
            "ncons_kernel_sizes": [int(w.shape[2]) for w in weights],
            "ncons_channels": [int(w.shape[0]) for w in weights],
        }
        for arg in ("ncons_kernel_sizes", "ncons_channels"):
            if arg in ckpt.args and parse_int_list(ckpt.args[arg], arg) != options[arg]:
                raise WeightsError(
                    f"'{ckpt.path}': its args say {arg}={ckpt.args[arg]} but its weights have {options[arg]}"
                )
        prefix = feature_prefix(ckpt.state_dict)
        if prefix is None:
            raise WeightsError(f"'{ckpt.path}' holds no backbone weights (no 'FeatureExtraction.model.*' keys)")
        backbone, layer = resnet_arch_of(torchvision_resnet_state(ckpt.keys_under(prefix), str(ckpt.path)))
        options["layer"] = layer
        return backbone, options

    @classmethod
    def official_head_state(cls, ckpt: OfficialCheckpoint) -> dict[str, torch.Tensor]:
        """The checkpoint's head weights under this model's names."""
        nc = official_conv4d_stack(ckpt.keys_under("NeighConsensus."), str(ckpt.path))
        return {f"refine.neigh_consensus.{k}": v for k, v in nc.items()}

    @classmethod
    def read_released(cls, path: Path, backbone: str | None):
        """An authors' ``.pth.tar``: architecture from its weights, head and ResNet backbone under this model's names."""
        ckpt = read_official_checkpoint(path)
        arch_backbone, options = cls.official_options(ckpt)
        if backbone is not None and backbone != arch_backbone:
            raise WeightsError(f"'{path}' holds {arch_backbone} features; use {param('backbone')} {arch_backbone}")
        state = cls.official_head_state(ckpt)
        skeleton = build_backbone(arch_backbone, "empty")  # the names and shapes the features map to
        for k, v in official_backbone_state(skeleton, ckpt, options["layer"]).items():
            state[f"backbone.{k}"] = v
        return released_weights(path, {"model": cls.name, "backbone": arch_backbone, **options}, state)
# ----------------------------------------------------------------------------- building


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return [x for x in a] == [y for y in b]
    return a == b


def _merge_options(stored: dict[str, Any], given: dict[str, Any], source: str) -> dict[str, Any]:
    """Architecture options from a checkpoint, with explicit options allowed only where they agree."""
    for k, v in given.items():
        if k in stored and not _same(stored[k], v):
            raise WeightsError(f"'{source}' was trained with {k}={stored[k]!r}, not {v!r}")
    return {**stored, **given}


def build_weak_model(
    cls: type[WeakConsensusModel],
    backbone: str,
    backbone_weights: str,
    weights: str | Path | None,
    options: dict[str, Any],
) -> WeakConsensusModel:
    """Build NC-Net or DCCNet (``cls``) with fresh, shipped, project or authors' weights.

    ``weights``: any spec of :func:`semcorr.models.pretrained.resolve`: ``None``
    (fresh head), ``"default"`` (the shipped file), a project checkpoint (``.safetensors`` with its
    JSON sidecar; architecture options are read from the sidecar; for DCCNet
    an NC-Net checkpoint gives the shared consensus and leaves context encoder
    and fusion fresh, see :func:`load_consensus_weights`) or an
    authors' checkpoint (any other file, e.g. ``.pth.tar``; architecture from
    its weights, backbone weights from the file unless ``backbone_weights``
    names others).
    """
    cls.check_options(options)
    allowed = set(cls.option_names())
    resolved = resolve(weights, cls, backbone)
    consensus_only = resolved.config.get("model") in cls.accepts_checkpoints_of
    stored = {k: v for k, v in resolved.config.items() if k in allowed}
    if resolved.kind == "released" and backbone_weights != "default":
        resolved = resolved.without_backbone()  # other backbone weights asked for: the file's are not loaded
    bw = "random" if resolved.carries_backbone and backbone_weights == "default" else backbone_weights
    model = cls(build_backbone(backbone, bw), bw, **_merge_options(stored, options, str(resolved.path)))
    if consensus_only:
        load_consensus_weights(model, resolved.state or {}, str(resolved.path))
        model.weights_id = resolved.weights_id
    else:
        load_resolved(model, resolved)
    model.backbone_in_checkpoint = resolved.carries_backbone and bw == "random"
    return model


def load_consensus_weights(model: WeakConsensusModel, state: dict[str, torch.Tensor], source: str) -> None:
    """Start a DCCNet from an NC-Net checkpoint: its consensus (``refine.*``) and any backbone weights.

    DCCNet's shared consensus is NC-Net's; its context encoder and fusion
    keep their fresh initialisation. Every consensus weight must be present
    with the right shape.
    """
    own = model.state_dict()
    wanted = [k for k in own if k.startswith("refine.")]
    missing = [k for k in wanted if k not in state]
    foreign = [k for k in state if not (k.startswith("refine.") or k.startswith("backbone.")) or k not in own]
    if missing or foreign:
        detail = f"missing '{missing[0]}'" if missing else f"unexpected '{foreign[0]}'"
        raise WeightsError(f"'{source}' does not hold an NC-Net consensus that fits {model.name} ({detail})")
    load_matching_shapes(model, own, state, source)


