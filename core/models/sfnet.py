"""SFNet: learning object-aware semantic correspondence (Lee, Kim, Lee, Kim, Ham, Sohn; CVPR 2019).

The model is a composition of the project's pieces:

1. a frozen backbone (:mod:`semcorr.backbones`) giving two feature maps — ResNet
   ``layer3`` (stride 16, 1024 channels) and ``layer4`` (stride 32, 2048
   channels) as in the paper; for MobileNetV2 the stride-16 ``features.13``
   (96 channels) and stride-32 ``features.17`` (320 channels), the last
   blocks of the same strides before the 1×1 expansion ``features.18``;
2. one trainable adaptation layer per map (:class:`semcorr.sfnet_adaptation.AdaptationLayer`,
   two residual conv-BN-ReLU blocks, kernel 5 on the stride-16 map and 3 on
   the stride-32 map), the stride-32 output upsampled bilinearly
   (``align_corners=True``) to the stride-16 grid;
3. matching (:func:`semcorr.correlation.correlate`, ``mode="product"``):
   L2-normalised features, one ReLU'd correlation per map, multiplied
   element-wise, then L2-normalised over the target cells
   (:func:`semcorr.correlation.normalize_over_target`); target→source uses the
   transposed product, normalised over the source cells;
4. kernel soft-argmax (:func:`semcorr.flow.kernel_soft_argmax_matches`, β = 50,
   σ = 5 cells; ``beta=None`` for the discrete argmax) in both directions.

Training (:meth:`SFNet.loss`) uses only images and foreground masks of
synthetic pairs (:mod:`semcorr.losses.sfnet`). Only the adaptation layers learn;
the frozen backbone stays in eval mode (fixed batch-norm statistics) even in
``model.train()``.

Object co-segmentation (``mask_head=True``, SFNet TPAMI 2020, Table 8): a
mask regression layer on each adapted map (:class:`semcorr.sfnet_adaptation.MaskRegression`,
``mask_reg_feat3`` / ``mask_reg_feat4``); the image's predicted foreground is
the product of the two (the stride-32 one upsampled to the stride-16 grid, as
the correlations are combined), trained with an extra L2 loss against the
mask on the grid. The authors' public code has no such layers, so their form
(one 3×3 convolution and a sigmoid each, multiplied; L2 weight 1) is
semcorr's. Off by default: the default model, its weights and its flows are
exactly those without the option.

Weights: any spec of :func:`semcorr.models.pretrained.resolve`; the authors'
released ``best_checkpoint.pt`` (``{'state_dict1': adap_layer_feat3,
'state_dict2': adap_layer_feat4}``, ResNet-101 only) is read by
:meth:`SFNet.read_released`.

The published evaluation protocol (resize to 288×288, zero-pad to 320×320,
crop the grid border, rescale, upsample) is :func:`sfnet_published_flow`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from PIL import Image, ImageOps

from ..sfnet_adaptation import AdaptationLayer, MaskRegression
from ..backbones import FeatureBackbone, build_backbone
from ..correlation import correlate, normalize_over_target, transpose_corr
from ..errors import UsageError, WeightsError, param
from ..flow import kernel_soft_argmax_matches, match_confidence, matches_to_flow
from ..images import image_to_tensor
from ..losses.sfnet import LAMBDA_MASK_REGRESSION, mask_regression_loss, masks_on_grid, sfnet_objective
from .base import CorrespondenceModel, Matches, load_resolved, matches_from_scores
from .pretrained import released_weights, resolve

#: Backbone layers SFNet reads: (stride-16 map, stride-32 map).
SFNET_LAYERS: dict[str, tuple[str, str]] = {
    "resnet101": ("layer3", "layer4"),
    "resnet50": ("layer3", "layer4"),
    "mobilenet_v2": ("features.13", "features.17"),
}
#: Adaptation kernel sizes for the (stride-16, stride-32) maps.
ADAPTATION_KERNELS = (5, 3)
#: Names of the two adaptation layers, as in the authors' code.
ADAPTATION_NAMES = ("adap_layer_feat3", "adap_layer_feat4")
#: Names of the optional mask regression layers (``mask_head=True``), one per adaptation layer.
MASK_NAMES = ("mask_reg_feat3", "mask_reg_feat4")
#: Seed of the mask regression layers' initialisation (a fresh head is the same on every run).
MASK_INIT_SEED = 0
#: Keys of the authors' released checkpoint, in the order of ``ADAPTATION_NAMES``.
RELEASED_KEYS = ("state_dict1", "state_dict2")

DEFAULT_BETA = 50.0
DEFAULT_SIGMA = 5.0


def check_sfnet_backbone(backbone: str) -> None:
    """:class:`UsageError` unless SFNet has a layer choice for ``backbone``."""
    if backbone not in SFNET_LAYERS:
        raise UsageError(f"SFNet has no layer choice for backbone '{backbone}' (use {', '.join(SFNET_LAYERS)})")


class SFNet(CorrespondenceModel):
    """SFNet on a frozen backbone; see the module docstring for the pipeline.

    ``forward(img_src (B, 3, HA, WA), img_trg (B, 3, HB, WB)) -> Matches`` with
    ``src_to_trg (B, hA, wA, 2)``, ``trg_to_src (B, hB, wB, 2)`` on the
    stride-16 grids, ``corr`` the source→target scores ``(B, hA, wA, hB, wB)``
    normalised over the target, and per-cell best scores as confidences.
    """

    name: ClassVar[str] = "sfnet"
    train_data: ClassVar[str] = "synthetic"
    train_defaults: ClassVar[dict[str, Any]] = {
        "optimizer": "adam",
        "lr": 3e-5,
        "betas": (0.9, 0.999),
        "batch_size": 16,
        "epochs": 40,
        "lr_schedule": {"type": "step", "milestones": [30], "gamma": 0.2, "unit": "epoch"},
        "image_size": 320,
    }
    input_size: int = 320

    def __init__(
        self,
        backbone: FeatureBackbone,
        backbone_weights: str = "default",
        beta: float | None = DEFAULT_BETA,
        kernel_sigma: float = DEFAULT_SIGMA,
        mask_head: bool = False,
        mask_weight: float = LAMBDA_MASK_REGRESSION,
    ):
        super().__init__()
        check_sfnet_backbone(backbone.name)
        if beta is not None and not beta > 0:
            raise UsageError(f"SFNet's softmax temperature beta must be positive or None (argmax), got {beta}")
        if not kernel_sigma > 0:
            raise UsageError(f"SFNet's kernel sigma must be positive, got {kernel_sigma}")
        self.backbone = backbone
        self.backbone_weights = str(backbone_weights)
        self.beta = None if beta is None else float(beta)
        self.kernel_sigma = float(kernel_sigma)
        #: Where the head weights came from: "fresh", "file:<name>:<sha12>" or "released-file:<name>:<sha12>"
        #: (:func:`semcorr.models.pretrained.resolve`).
        self.weights_id = "fresh"
        self.layers = SFNET_LAYERS[backbone.name]
        for attr, layer, k in zip(ADAPTATION_NAMES, self.layers, ADAPTATION_KERNELS):
            self.add_module(attr, AdaptationLayer(backbone.channels(layer), k))
        if not mask_weight >= 0:
            raise UsageError(f"SFNet's mask_weight must be 0 or more, got {mask_weight}")
        self.mask_head = bool(mask_head)
        self.mask_weight = float(mask_weight)
        #: "trained" (from the weights file), "fresh" (initialised here) or "none".
        self.mask_head_state = "fresh" if self.mask_head else "none"
        if self.mask_head:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(MASK_INIT_SEED)
                for attr, layer in zip(MASK_NAMES, self.layers):
                    self.add_module(attr, MaskRegression(backbone.channels(layer)))

    # ------------------------------------------------------------------ pieces

    @property
    def required_layers(self) -> list[str]:
        return list(self.layers)

    def adapt(self, feats: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Backbone features → adapted ``(fine (B, C3, h, w), coarse (B, C4, h', w'))``.

        The coarse map is returned at its own grid; :meth:`correlation`
        upsamples it to the fine grid.
        """
        fine, coarse = (feats[layer] for layer in self.layers)
        return self.adap_layer_feat3(fine), self.adap_layer_feat4(coarse)

    @staticmethod
    def correlation(
        src: tuple[torch.Tensor, torch.Tensor], trg: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Adapted (fine, coarse) maps of both images → normalised scores in both directions.

        The coarse maps are upsampled to the fine grids (bilinear,
        ``align_corners=True``), every map L2-normalised, the ReLU'd
        correlations of the two levels multiplied. Returns
        ``corr_s2t (B, hA, wA, hB, wB)`` normalised over the target cells and
        ``corr_t2s (B, hB, wB, hA, wA)`` (the transposed product) normalised
        over the source cells.
        """
        product = correlate(list(src), list(trg), mode="product", normalize=True, relu=True)
        return normalize_over_target(product), normalize_over_target(transpose_corr(product))

    def predict_mask(self, adapted: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Adapted ``(fine (B, C3, h, w), coarse (B, C4, h', w'))`` → foreground ``(B, 1, h, w)`` in [0, 1].

        The product of the two mask regressions, the coarse one upsampled to
        the fine grid (bilinear, ``align_corners=True``).
        """
        if not self.mask_head:
            raise UsageError("this SFNet has no mask regression layers (build it with mask_head=True)")
        fine, coarse = adapted
        m3 = self.mask_reg_feat3(fine)
        m4 = torch.nn.functional.interpolate(self.mask_reg_feat4(coarse), size=fine.shape[-2:], mode="bilinear", align_corners=True)
        return m3 * m4

    def match(self, corr: torch.Tensor) -> torch.Tensor:
        """Kernel soft-argmax (or argmax when ``beta`` is None) of already normalised scores → ``(B, h, w, 2)``."""
        return kernel_soft_argmax_matches(corr, self.beta, self.kernel_sigma, normalize=False)

    def head(self, feats_src: dict[str, torch.Tensor], feats_trg: dict[str, torch.Tensor]) -> Matches:
        src, trg = self.adapt(feats_src), self.adapt(feats_trg)
        corr_s2t, corr_t2s = self.correlation(src, trg)
        m = matches_from_scores(corr_s2t, self.match, match_confidence, corr_t=corr_t2s)
        if self.mask_head:
            m.mask_src, m.mask_trg = self.predict_mask(src)[:, 0], self.predict_mask(trg)[:, 0]
        return m

    # ------------------------------------------------------------------ training

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """SFNet's objective on a ``"synthetic"`` batch (uses images and masks only).

        batch: ``src_image``/``trg_image`` ``(B, 3, H, W)`` ImageNet-normalised,
        ``src_mask``/``trg_mask`` ``(B, 1, H, W)`` in {0, 1}. Masks are resized
        to the feature grids and thresholded at 0.1. Returns the weighted sum
        (λ mask 3, flow 16, smooth 0.5) and the unweighted terms; with the mask
        head, plus ``mask_weight`` × the L2 mask regression of both images
        (logged as ``mask_regression``).
        """
        missing = [k for k in ("src_image", "trg_image", "src_mask", "trg_mask") if k not in batch]
        if missing:
            raise ValueError(f"SFNet's loss needs batch keys {missing} (a 'synthetic' batch)")
        m = self(batch["src_image"], batch["trg_image"])
        mask_src = masks_on_grid(batch["src_mask"].to(m.src_to_trg.dtype), tuple(m.src_to_trg.shape[1:3]))
        mask_trg = masks_on_grid(batch["trg_mask"].to(m.trg_to_src.dtype), tuple(m.trg_to_src.shape[1:3]))
        total, logs = sfnet_objective(m.src_to_trg, m.trg_to_src, mask_src, mask_trg)
        if self.mask_head:
            l_reg = mask_regression_loss(m.mask_src.unsqueeze(1), mask_src) + mask_regression_loss(m.mask_trg.unsqueeze(1), mask_trg)
            total = total + self.mask_weight * l_reg
            logs = dict(logs, loss=float(total.detach()), mask_regression=float(l_reg.detach()))
        return total, logs

    @classmethod
    def read_released(cls, path: Path, backbone: str | None):
        """The authors' ``best_checkpoint.pt`` (adaptation layers of ResNet-101 features) under this model's names."""
        from ..weights import load_state_dict_file

        obj = load_state_dict_file(path, raw=True)
        if not is_released_checkpoint(obj):
            raise WeightsError(
                f"'{path}' is neither a project checkpoint (.safetensors) nor SFNet's released "
                "checkpoint (a dict with 'state_dict1' and 'state_dict2')"
            )
        if backbone not in (None, "resnet101"):
            raise WeightsError(
                f"SFNet's released checkpoint '{path.name}' was trained on resnet101 features, "
                f"not {backbone}; use {param('backbone')} resnet101"
            )
        state = released_state_dict(obj, str(path))
        check_head_state(state, "resnet101", str(path))
        config = {"model": cls.name, "backbone": "resnet101", "backbone_weights": "default",
                  "beta": DEFAULT_BETA, "kernel_sigma": DEFAULT_SIGMA}  # fmt: skip
        return released_weights(path, config, state)

    def config(self) -> dict[str, Any]:
        """Architecture options; every key but ``model`` is a keyword argument of :func:`build_sfnet`."""
        cfg = {
            "model": self.name,
            "backbone": self.backbone.name,
            "backbone_weights": self.backbone_weights,
            "beta": self.beta,
            "kernel_sigma": self.kernel_sigma,
        }
        if self.mask_head:  # absent otherwise: the default model's config is unchanged
            cfg.update(mask_head=True, mask_weight=self.mask_weight)
        return cfg


# ----------------------------------------------------------------------------- released checkpoint


def is_released_checkpoint(obj: Any) -> bool:
    """True for the authors' format: a dict with ``state_dict1`` and ``state_dict2`` dicts."""
    return isinstance(obj, dict) and all(isinstance(obj.get(k), dict) for k in RELEASED_KEYS)


def released_state_dict(obj: dict[str, Any], source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Rename the authors' ``{'state_dict1': …, 'state_dict2': …}`` to this model's head keys.

    ``state_dict1`` → ``adap_layer_feat3.*``, ``state_dict2`` → ``adap_layer_feat4.*``;
    a DataParallel ``module.`` prefix is dropped, and a missing BatchNorm
    ``num_batches_tracked`` counter (older PyTorch) is filled with 0.
    """
    if not is_released_checkpoint(obj):
        raise WeightsError(f"'{source}' is not SFNet's released format (a dict with 'state_dict1' and 'state_dict2')")
    out: dict[str, torch.Tensor] = {}
    for key, prefix in zip(RELEASED_KEYS, ADAPTATION_NAMES):
        for k, v in obj[key].items():
            if not isinstance(v, torch.Tensor):
                raise WeightsError(f"'{source}': entry '{key}/{k}' is not a tensor")
            k = k[len("module."):] if k.startswith("module.") else k
            out[f"{prefix}.{k}"] = v
        for k in list(out):
            if k.startswith(prefix) and k.endswith(".running_var"):
                counter = k[: -len("running_var")] + "num_batches_tracked"
                out.setdefault(counter, torch.zeros((), dtype=torch.long))
    return out


def expected_head_shapes(backbone: str) -> dict[str, tuple[int, ...]]:
    """Shapes of SFNet's head weights for ``backbone``, computed without allocating them."""
    check_sfnet_backbone(backbone)
    from ..backbones import layer_table

    table = layer_table(backbone)
    shapes: dict[str, tuple[int, ...]] = {}
    with torch.device("meta"):
        for attr, layer, k in zip(ADAPTATION_NAMES, SFNET_LAYERS[backbone], ADAPTATION_KERNELS):
            for name, t in AdaptationLayer(table[layer][0], k).state_dict().items():
                shapes[f"{attr}.{name}"] = tuple(t.shape)
    return shapes


def check_head_state(state: dict[str, torch.Tensor], backbone: str, source: str) -> None:
    """Raise :class:`WeightsError` unless ``state`` has exactly SFNet's head weights for ``backbone``."""
    shapes = expected_head_shapes(backbone)
    missing = [k for k in shapes if k not in state]
    unexpected = [k for k in state if k not in shapes]
    if missing or unexpected:
        detail = f"missing '{missing[0]}'" if missing else f"unexpected '{unexpected[0]}'"
        raise WeightsError(f"'{source}' does not fit SFNet with backbone {backbone} ({detail})")
    for k, shape in shapes.items():
        if tuple(state[k].shape) != shape:
            raise WeightsError(f"'{source}': '{k}' has shape {tuple(state[k].shape)}, SFNet/{backbone} expects {shape}")


def build_sfnet(
    backbone: str | None = None,
    backbone_weights: str | Path = "default",
    weights: str | Path | None = None,
    beta: float | None = DEFAULT_BETA,
    kernel_sigma: float = DEFAULT_SIGMA,
    mask_head: bool | None = None,
    mask_weight: float | None = None,
) -> SFNet:
    """Build SFNet.

    * ``backbone``: ``"mobilenet_v2"``, ``"resnet101"`` or ``"resnet50"``;
      ``None`` means the backbone the weights were made for (a project
      checkpoint's sidecar, ``resnet101`` for the authors' file), else
      ``"mobilenet_v2"``.
    * ``backbone_weights``: as :func:`semcorr.backbones.build_backbone`.
    * ``weights``: any spec of :func:`semcorr.models.pretrained.resolve` (the
      authors' released ``best_checkpoint.pt`` is ResNet-101 only).
    * ``beta``: softmax temperature of the kernel soft-argmax (None: argmax);
      ``kernel_sigma``: Gaussian window std in feature cells.
    * ``mask_head``: add the mask regression layers (co-segmentation); None
      means what a project checkpoint's sidecar says, else no. Weights without
      them (the shipped file, the authors' file) load with a *fresh* mask head
      (``model.mask_head_state == "fresh"``, ``+fresh-mask-head`` in the
      weights id); ``mask_weight``: the L2 mask term's weight in training
      (None: the sidecar's, else :data:`~semcorr.losses.sfnet.LAMBDA_MASK_REGRESSION`).
    """
    if isinstance(mask_head, str):
        mask_head = {"true": True, "false": False}.get(mask_head.lower(), mask_head)  # type: ignore[arg-type]
    if mask_head not in (None, True, False):
        raise UsageError(f"SFNet's mask_head must be true or false, not '{mask_head}'")
    resolved = resolve(weights, SFNet, backbone)
    stored = resolved.config
    backbone = backbone or stored.get("backbone") or SFNet.default_backbone
    check_sfnet_backbone(backbone)
    mask_head = bool(stored.get("mask_head", False)) if mask_head is None else mask_head
    mask_weight = float(stored.get("mask_weight", LAMBDA_MASK_REGRESSION)) if mask_weight is None else mask_weight
    model = SFNet(
        build_backbone(backbone, backbone_weights), backbone_weights, beta=beta, kernel_sigma=kernel_sigma,
        mask_head=mask_head, mask_weight=mask_weight,
    )  # fmt: skip
    kept = load_resolved(model, resolved, optional=MASK_NAMES)
    if model.mask_head and resolved.state is not None:
        model.mask_head_state = "fresh" if kept else "trained"
        if kept:
            model.weights_id += "+fresh-mask-head"
    model.eval()
    return model


# ----------------------------------------------------------------------------- published test protocol


def published_input(img: Image.Image, size: int = 320, pad: int = 16) -> torch.Tensor:
    """The authors' test-time input: PIL bilinear resize to ``size − 2·pad`` square, zero (black) padding of ``pad`` pixels.

    PIL RGB image → ImageNet-normalised ``(1, 3, size, size)`` (as
    ``Resize((288, 288)), Pad(16), ToTensor(), Normalize(...)`` in their code).
    """
    inner = size - 2 * pad
    if inner < 16:
        raise UsageError(f"padding {pad} leaves no image inside {size}x{size}")
    resized = img.convert("RGB").resize((inner, inner), Image.BILINEAR)
    return image_to_tensor(ImageOps.expand(resized, border=pad, fill=(0, 0, 0)))


def crop_and_rescale_grid(grid: torch.Tensor) -> torch.Tensor:
    """Drop the border cells of a match grid and stretch it, as the authors' test code does.

    grid ``(B, h, w, 2)`` → ``(B, h−2, w−2, 2)`` with x scaled by
    ``(w//2) / (w//2 − 1)`` and y by ``(h//2) / (h//2 − 1)`` (20 cells:
    10/9, undoing the 16-pixel padding of a 320-pixel input).
    """
    if grid.dim() != 4 or grid.shape[-1] != 2:
        raise ValueError(f"grid must be (B, h, w, 2), got {tuple(grid.shape)}")
    h, w = grid.shape[1:3]
    if h < 4 or w < 4:
        raise ValueError(f"the published protocol needs a grid of at least 4x4 cells, got {h}x{w}")
    scale = grid.new_tensor([(w // 2) / (w // 2 - 1), (h // 2) / (h // 2 - 1)])
    return grid[:, 1:-1, 1:-1, :] * scale


@torch.no_grad()
def sfnet_published_flow(
    model: SFNet, src_img: Image.Image, trg_img: Image.Image, size: int = 320, pad: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense pixel flows of one pair under SFNet's published test protocol.

    Both images go through :func:`published_input`; the model's match grids
    go through :func:`crop_and_rescale_grid`, are upsampled bilinearly
    (``align_corners=True``) to the original image sizes and converted to
    pixels. Returns ``(flow_src_to_trg (1, H_src, W_src, 2),
    flow_trg_to_src (1, H_trg, W_trg, 2))``, absolute pixel ``(x, y)`` in the
    other original image, on the CPU. (The authors transfer PCK keypoints
    with ``flow_trg_to_src``, rounding each keypoint to the nearest pixel.)
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        m = model(published_input(src_img, size, pad).to(device), published_input(trg_img, size, pad).to(device))
    finally:
        model.train(was_training)
    src_size = (src_img.size[1], src_img.size[0])
    trg_size = (trg_img.size[1], trg_img.size[0])
    flow_s2t = matches_to_flow(crop_and_rescale_grid(m.src_to_trg), src_size, trg_size)
    flow_t2s = matches_to_flow(crop_and_rescale_grid(m.trg_to_src), trg_size, src_size)
    return flow_s2t.cpu(), flow_t2s.cpu()


__all__ = [
    "SFNet",
    "build_sfnet",
    "released_state_dict",
    "sfnet_published_flow",
    "published_input",
    "crop_and_rescale_grid",
    "SFNET_LAYERS",
]
