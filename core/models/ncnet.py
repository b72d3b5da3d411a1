"""NC-Net (Rocco et al., "Neighbourhood Consensus Networks", NeurIPS 2018).

Pipeline: backbone features of both images → L2 normalisation (eps 1e-6) →
raw 4D correlation → MutualMatching → NeighConsensus → MutualMatching
(:class:`core.consensus.ConsensusRefinement`) → matches in both directions.

Backbone layer: ResNet-101 ``layer3`` (stride 16, 1024 channels) as
published; with MobileNetV2 the stride-16 output ``features.13`` (96
channels). At the default 400 px input both give a 25 × 25 grid; any input
size works.

This module also holds what NC-Net and DCCNet share
(:class:`WeakConsensusModel`: feature layer, frozen or partly fine-tuned
backbone, weak loss, weights resolution) and the public evaluation's keypoint
transfer (:func:`transfer_keypoints`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from ..backbones import FeatureBackbone, build_backbone
from ..consensus import PF_PASCAL_CHANNELS, PF_PASCAL_KERNEL_SIZES, ConsensusRefinement, softmax_over_target
from ..correlation import center_features, correlation_4d, hypercolumn, l2_normalize, transpose_corr
from ..errors import UsageError, WeightsError
from ..weights import weights_file_id
from ..flow import argmax_matches
from ..geometry import cell_centers
from ..losses.weak import matching_score, negative_pairs, weak_loss
from .base import CorrespondenceModel, Matches, load_head_weights, load_matching_shapes
from .official import (
    OfficialCheckpoint,
    feature_prefix,
    load_backbone_from_official,
    official_conv4d_stack,
    read_official_checkpoint,
    resnet_arch_of,
    torchvision_resnet_state,
)

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


# ----------------------------------------------------------------------------- evaluation helpers


def transfer_keypoints(corr: torch.Tensor, points_trg: torch.Tensor) -> torch.Tensor:
    """Move target keypoints to the source image as the public NC-Net/DCCNet evaluation does.

    corr ``(B, hA, wA, hB, wB)``; points_trg ``(B, N, 2)`` normalised target
    ``(x, y)`` → ``(B, N, 2)`` normalised source ``(x, y)``.

    For every target cell the best source cell is the argmax over all source
    cells (``corr_to_matches``: a softmax over the source first would not
    change it); a keypoint then takes the bilinear interpolation of the
    matches of the four target cells around it (``bilinearInterpPointTnf``):
    corner weights are ``|x − x_opposite| · |y − y_opposite|`` normalised by
    their sum. Indices are clamped so points on or beyond the border use the
    border cells (the public code assumes square grids, batch size 1 and
    points inside the image; here any grid and batch).
    """
    if corr.dim() != 5:
        raise ValueError(f"corr must be (B, hA, wA, hB, wB), got {tuple(corr.shape)}")
    if points_trg.dim() != 3 or points_trg.shape[-1] != 2 or points_trg.shape[0] != corr.shape[0]:
        raise ValueError(f"points must be (B, N, 2) with B = {corr.shape[0]}, got {tuple(points_trg.shape)}")
    b, _, _, hb, wb = corr.shape
    grid = argmax_matches(transpose_corr(corr))  # (B, hB, wB, 2) source (x, y) per target cell
    pts = points_trg.to(grid.dtype)
    xs = cell_centers(wb, grid.device, grid.dtype)
    ys = cell_centers(hb, grid.device, grid.dtype)

    def lower_index(v: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
        # number of cell centres strictly left of the point, minus one, kept in [0, n - 2]
        idx = (v.unsqueeze(-1) - centers > 0).sum(-1) - 1
        return idx.clamp(0, max(centers.numel() - 2, 0))

    x0 = lower_index(pts[..., 0], xs)
    y0 = lower_index(pts[..., 1], ys)
    x1 = (x0 + 1).clamp(max=wb - 1)
    y1 = (y0 + 1).clamp(max=hb - 1)
    flat = grid.reshape(b, hb * wb, 2)

    def take(yi: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        return torch.gather(flat, 1, (yi * wb + xi).unsqueeze(-1).expand(-1, -1, 2))

    def weight(yi: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        # weight of a corner = area of the rectangle between the point and the opposite corner;
        # a one-cell axis has a single "corner" pair and contributes a factor 1
        fx = (pts[..., 0] - xs[xi]).abs() if wb > 1 else torch.ones_like(pts[..., 0])
        fy = (pts[..., 1] - ys[yi]).abs() if hb > 1 else torch.ones_like(pts[..., 1])
        return fx * fy

    w00, w11 = weight(y1, x1), weight(y0, x0)  # corner (y0, x0) is weighted by the distance to (y1, x1)
    w01, w10 = weight(y1, x0), weight(y0, x1)  # corner (y0, x1) by the distance to (y1, x0)
    total = (w00 + w11 + w01 + w10).unsqueeze(-1)
    return (
        take(y0, x0) * w00.unsqueeze(-1)
        + take(y1, x1) * w11.unsqueeze(-1)
        + take(y0, x1) * w01.unsqueeze(-1)
        + take(y1, x0) * w10.unsqueeze(-1)
    ) / total


def best_probability(prob: torch.Tensor) -> torch.Tensor:
    """Largest probability of every source cell: ``(B, hA, wA, hB, wB)`` → ``(B, hA, wA)``."""
    b, ha, wa = prob.shape[:3]
    return prob.reshape(b, ha, wa, -1).max(dim=-1).values


# ----------------------------------------------------------------------------- shared model base


def _as_name_list(v: Any) -> list[str]:
    """A layer name, a sequence of names or a comma-separated string → list of names."""
    if isinstance(v, str):
        return [x.strip() for x in v.replace(";", ",").split(",") if x.strip()]
    return [str(x) for x in v]


def _as_int_list(v: Any, name: str) -> list[int]:
    """An int, a sequence of ints or a comma-separated string (``"5,5,5"``) → list of ints."""
    if isinstance(v, int):
        return [v]
    if isinstance(v, str):
        v = _as_name_list(v)
    try:
        return [int(x) for x in v]
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be a list of integers, got {v!r}") from None


class WeakConsensusModel(CorrespondenceModel):
    """What NC-Net and DCCNet share: one stride-16 feature layer, consensus refinement, the weak loss.

    Subclasses implement ``branch_scores(feats_src, feats_trg) -> {branch: (B,)
    matching score}`` (see :mod:`core.losses.weak`), used by :meth:`loss`,
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
    #: records this model refined (``core.pipeline.flow_record``).
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
        self.hypercolumn = _as_name_list(hypercolumn)
        for name in self.hypercolumn:
            backbone.resolve(name)
        self.center = bool(center)
        self.ncons_kernel_sizes = _as_int_list(ncons_kernel_sizes, "ncons_kernel_sizes")
        self.ncons_channels = _as_int_list(ncons_channels, "ncons_channels")
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

    def train(self, mode: bool = True):
        """Train the head; the backbone always stays in eval mode (frozen BatchNorm statistics)."""
        super().train(mode)
        self.backbone.eval()
        return self

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
        (:func:`core.correlation.hypercolumn`), so the 4D volume keeps the
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
            "layer": self.layer,
            "ncons_kernel_sizes": list(self.ncons_kernel_sizes),
            "ncons_channels": list(self.ncons_channels),
            "symmetric": self.symmetric,
            "finetune_blocks": self.finetune_blocks,
            "hypercolumn": list(self.hypercolumn),
            "center": self.center,
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
            if arg in ckpt.args and _as_int_list(ckpt.args[arg], arg) != options[arg]:
                raise WeightsError(
                    f"'{ckpt.path}': its args say {arg}={ckpt.args[arg]} but its weights have {options[arg]}"
                )
        prefix = feature_prefix(ckpt.state_dict)
        if prefix is None:
            raise WeightsError(f"'{ckpt.path}' holds no backbone weights (no 'FeatureExtraction.model.*' keys)")
        backbone, layer = resnet_arch_of(torchvision_resnet_state(ckpt.keys_under(prefix), str(ckpt.path)))
        options["layer"] = layer
        return backbone, options

    def official_head_state(self, ckpt: OfficialCheckpoint) -> dict[str, torch.Tensor]:
        """The checkpoint's head weights under this model's names."""
        nc = official_conv4d_stack(ckpt.keys_under("NeighConsensus."), str(ckpt.path))
        return {f"refine.neigh_consensus.{k}": v for k, v in nc.items()}

    def load_official(self, ckpt: OfficialCheckpoint, with_backbone: bool = True) -> None:
        """Load an authors' checkpoint: head weights, and the backbone's when ``with_backbone``."""
        if with_backbone:
            load_backbone_from_official(self.backbone, ckpt, self.layer)
            self.backbone_in_checkpoint = True
        load_head_weights(self, self.official_head_state(ckpt), str(ckpt.path))


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
        corr = self.correlation(feats_src, feats_trg)
        corr_t = transpose_corr(corr)
        return Matches(
            src_to_trg=argmax_matches(corr),
            trg_to_src=argmax_matches(corr_t),
            corr=corr,
            confidence_src=best_probability(softmax_over_target(corr)),
            confidence_trg=best_probability(softmax_over_target(corr_t)),
        )

    def branch_scores(self, feats_src, feats_trg):
        return {"ncnet": matching_score(self.correlation(feats_src, feats_trg))}


# ----------------------------------------------------------------------------- building


def shipped_weights(model: str, backbone: str) -> Path:
    """The weights shipped in the package for ``model`` on ``backbone``; WeightsError when there are none."""
    from ..weights import shipped_weights_path

    path = shipped_weights_path(model, backbone)
    if not path.is_file():
        raise WeightsError(
            f"no {model} weights are shipped for backbone {backbone}; pass --weights FILE "
            "(a semcorr checkpoint .safetensors or the authors' .pth.tar)"
        )
    return path


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

    ``weights``: ``None`` (fresh head), ``"default"`` (shipped weights, see
    :func:`shipped_weights`), a project checkpoint (``.safetensors`` with its
    JSON sidecar; architecture options are read from the sidecar; for DCCNet
    an NC-Net checkpoint gives the shared consensus and leaves context encoder
    and fusion fresh, see :func:`load_consensus_weights`) or an
    authors' checkpoint (any other file, e.g. ``.pth.tar``; architecture from
    its weights, backbone weights from the file unless ``backbone_weights``
    names others).
    """
    import inspect

    allowed = set(inspect.signature(cls.__init__).parameters) - {"self", "backbone", "backbone_weights"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise UsageError(f"{cls.name} has no option '{unknown[0]}' (options: {', '.join(sorted(allowed))})")
    if weights is None:
        return cls(build_backbone(backbone, backbone_weights), backbone_weights, **options)
    path = shipped_weights(cls.name, backbone) if str(weights) == "default" else Path(weights)
    if not path.is_file():
        raise WeightsError(f"weights file '{path}' does not exist")
    if path.suffix == ".safetensors":
        from ..weights import load_checkpoint

        state, meta = load_checkpoint(path)
        cfg = dict(meta.get("config", {}))
        consensus_only = cls.name == "dccnet" and cfg.get("model") == "ncnet"
        if cfg.get("model") not in (None, cls.name) and not consensus_only:
            raise WeightsError(f"'{path}' holds {cfg.get('model')} weights, not {cls.name}")
        if cfg.get("backbone") not in (None, backbone):
            raise WeightsError(f"'{path}' was trained on backbone {cfg['backbone']}; use --backbone {cfg['backbone']}")
        stored = {k: v for k, v in cfg.items() if k in allowed}
        carried = any(k.startswith("backbone.") for k in state)
        bw = "random" if carried and backbone_weights == "default" else backbone_weights
        model = cls(build_backbone(backbone, bw), bw, **_merge_options(stored, options, str(path)))
        if consensus_only:
            load_consensus_weights(model, state, str(path))
        else:
            load_head_weights(model, state, str(path))
        model.backbone_in_checkpoint = carried and bw == "random"
        model.weights_id = weights_file_id(path)
        return model
    ckpt = read_official_checkpoint(path)
    arch_backbone, stored = cls.official_options(ckpt)
    if backbone != arch_backbone:
        raise WeightsError(f"'{path}' holds {arch_backbone} features; use --backbone {arch_backbone}")
    from_file = backbone_weights == "default"
    bw = "random" if from_file else backbone_weights
    model = cls(build_backbone(backbone, bw), bw, **_merge_options(stored, options, str(path)))
    model.load_official(ckpt, with_backbone=from_file)
    model.weights_id = "official-" + weights_file_id(path)
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
