"""What every learned correspondence model provides.

A model is a composition of the pipeline's pieces — backbone → correlation →
refinement → matches — and exposes them through one interface, so the CLI,
the evaluation and the training engine treat all models alike:

* ``model.backbone``: a :class:`semcorr.backbones.FeatureBackbone`;
* ``model.required_layers``: the backbone layers the head reads;
* ``model.head(feats_src, feats_trg) -> Matches``: from backbone features
  (``{layer: (B, C, h, w)}``) to matches in both directions;
* ``model(img_src, img_trg) -> Matches``: backbone then head, images
  ImageNet-normalised ``(B, 3, H, W)``;
* ``model.loss(batch) -> (loss, logs)``: the paper's training objective on a
  batch from the data source named by ``model.train_data``;
* ``model.config()``: the architecture options, stored in checkpoint sidecars.

Matches use normalised coordinates (:mod:`semcorr.geometry`);
:func:`semcorr.flow.matches_to_flow` turns them into pixel flows.
"""

from __future__ import annotations

import inspect
from abc import ABCMeta, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn as nn

from ..backbones import FeatureBackbone


@dataclass
class Matches:
    """A model's output for a batch of pairs.

    * ``src_to_trg``: ``(B, hA, wA, 2)`` normalised target ``(x, y)`` per source cell;
    * ``trg_to_src``: ``(B, hB, wB, 2)`` normalised source ``(x, y)`` per target cell;
    * ``corr``: optional final scores ``(B, hA, wA, hB, wB)``;
    * ``corr_trg_to_src``: optional target→source scores ``(B, hB, wB, hA, wA)``
      when they are not the transpose of ``corr`` (DCCNet's second merge);
    * ``confidence_src`` / ``confidence_trg``: optional ``(B, hA, wA)`` / ``(B, hB, wB)``;
    * ``mask_src`` / ``mask_trg``: optional predicted foreground ``(B, hA, wA)`` / ``(B, hB, wB)``
      in [0, 1] on the grids (SFNet with its mask regression layers);
    * ``extra``: any other tensor worth saving (e.g. DCCNet's fusion weights).
    """

    src_to_trg: torch.Tensor
    trg_to_src: torch.Tensor
    corr: torch.Tensor | None = None
    corr_trg_to_src: torch.Tensor | None = None
    confidence_src: torch.Tensor | None = None
    confidence_trg: torch.Tensor | None = None
    mask_src: torch.Tensor | None = None
    mask_trg: torch.Tensor | None = None
    extra: dict[str, torch.Tensor] = field(default_factory=dict)


def matches_from_scores(
    corr: torch.Tensor,
    match: Callable[[torch.Tensor], torch.Tensor],
    confidence: Callable[[torch.Tensor], torch.Tensor],
    corr_t: torch.Tensor | None = None,
) -> Matches:
    """:class:`Matches` in both directions from source→target scores ``corr`` ``(B, hA, wA, hB, wB)``.

    ``corr_t``: the target→source scores ``(B, hB, wB, hA, wA)`` (default: the
    transpose of ``corr``). ``match`` maps a volume to ``(B, h, w, 2)`` matches
    over its last two dimensions, ``confidence`` to ``(B, h, w)``; ``corr`` is kept.
    """
    if corr_t is None:
        from ..correlation import transpose_corr

        corr_t = transpose_corr(corr)
    return Matches(
        src_to_trg=match(corr),
        trg_to_src=match(corr_t),
        corr=corr,
        confidence_src=confidence(corr),
        confidence_trg=confidence(corr_t),
    )


class CorrespondenceModel(nn.Module, metaclass=ABCMeta):
    """Base class: subclasses set ``name``, build ``self.backbone`` and implement
    ``required_layers``, ``head`` and ``loss`` (abstract: a subclass missing one cannot be built)."""

    name: ClassVar[str] = "base"
    #: Which training data source the paper's objective needs:
    #: ``"synthetic"`` (warped single images with masks and exact correspondence),
    #: ``"weak"`` (same-class image pairs) or ``"keypoints"`` (annotated pairs).
    train_data: ClassVar[str] = "synthetic"
    #: The paper's training defaults (optimizer, lr, batch size, epochs, schedule, image size).
    train_defaults: ClassVar[dict[str, Any]] = {}
    #: Working image size for inference (square side, pixels).
    input_size: int = 400
    #: Backbone used when neither the caller nor the weights name one.
    default_backbone: ClassVar[str] = "mobilenet_v2"
    #: Other models whose semcorr checkpoints this one starts from (DCCNet: NC-Net's consensus).
    accepts_checkpoints_of: ClassVar[tuple[str, ...]] = ()
    #: True when a ``.safetensors`` file without a sidecar may be the authors' file (MMNet).
    reads_bare_safetensors: ClassVar[bool] = False

    backbone: FeatureBackbone

    @property
    def supervision_summary(self) -> str:
        """What training learns from, in a few words (the train command's banner)."""
        return f"{self.train_data} supervision"

    @property
    @abstractmethod
    def required_layers(self) -> list[str]:
        """Backbone layer names the head reads."""

    @abstractmethod
    def head(self, feats_src: dict[str, torch.Tensor], feats_trg: dict[str, torch.Tensor]) -> Matches:
        """Backbone features of both images (``{layer: (B, C, h, w)}``) → :class:`Matches`."""

    def train(self, mode: bool = True):
        """Train the head; the backbone always stays in eval mode.

        Its BatchNorm statistics stay fixed whether its weights are frozen or
        fine-tuned: NC-Net's and DCCNet's published training keep their
        feature extractor in eval mode throughout, and MMNet's batches of 5 are
        too small for batch statistics. The one backbone-freeze policy of semcorr
        (the training engine relies on it).
        """
        super().train(mode)
        backbone = getattr(self, "backbone", None)
        if backbone is not None:
            backbone.eval()
        return self

    def forward(self, img_src: torch.Tensor, img_trg: torch.Tensor) -> Matches:
        layers = self.required_layers
        return self.head(self.backbone(img_src, layers), self.backbone(img_trg, layers))

    @abstractmethod
    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """The paper's training objective on a batch: ``(scalar loss, {name: value})``."""

    #: Constructor options that :meth:`recorded_options` leaves out (memory knobs, not architecture).
    unrecorded_options: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def option_names(cls) -> list[str]:
        """The model's options: its constructor's keyword parameters but ``backbone`` and ``backbone_weights``.

        Declared once (the constructor; one that takes ``**options`` adds its
        base class's); builders accept exactly these and :meth:`recorded_options` records them.
        """
        skip = {"self", "backbone", "backbone_weights"}
        names: list[str] = []
        for klass in cls.__mro__:  # a constructor taking **options passes them on to its base's
            init = klass.__dict__.get("__init__")
            if init is None:
                continue
            params = list(inspect.signature(init).parameters.values())
            names += [p.name for p in params if p.name not in skip and p.name not in names and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
            if not any(p.kind == p.VAR_KEYWORD for p in params):
                break
        return names

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        """:class:`UsageError` naming the first of ``options`` that is not one of :meth:`option_names`."""
        from ..errors import UsageError

        allowed = cls.option_names()
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise UsageError(f"{cls.name} has no option '{unknown[0]}' (options: {', '.join(sorted(allowed))})")

    def recorded_options(self) -> dict[str, Any]:
        """``{option: value}`` of every option but :attr:`unrecorded_options` (sequences as lists), for :meth:`config`."""
        out = {}
        for name in self.option_names():
            if name not in self.unrecorded_options:
                value = getattr(self, name)
                out[name] = list(value) if isinstance(value, (list, tuple)) else value
        return out

    def config(self) -> dict[str, Any]:
        """Builder arguments that rebuild this architecture (``build_<name>(**config minus "model")``).

        ``backbone_weights`` is the argument the model was built with (e.g.
        ``"default"``), not the resolved weights id, so the config rebuilds.
        """
        return {
            "model": self.name,
            "backbone": self.backbone.name,
            "backbone_weights": getattr(self, "backbone_weights_arg", "default"),
        }

    #: How the predictor resizes images to the working size: ``"pil"`` (PIL bilinear,
    #: the published NC-Net/DCCNet/SFNet evaluations) or ``"tensor"`` (``F.interpolate``
    #: bilinear, align_corners=False, no antialiasing, on the normalised tensor).
    input_resize: ClassVar[str] = "pil"

    def pixel_flows(
        self, m: Matches, src_size: tuple[int, int], trg_size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense pixel flows ``(1, H_src, W_src, 2)`` and ``(1, H_trg, W_trg, 2)`` from one pair's matches.

        Default: the match grids upsampled bilinearly (:func:`semcorr.flow.matches_to_flow`).
        """
        from ..flow import matches_to_flow

        return matches_to_flow(m.src_to_trg.float(), src_size, trg_size), matches_to_flow(m.trg_to_src.float(), trg_size, src_size)

    def transfer_keypoints(
        self, m: Matches, points: torch.Tensor, direction: str, src_size: tuple[int, int], trg_size: tuple[int, int]
    ) -> torch.Tensor | None:
        """The model's own keypoint transfer, or None to let the evaluation sample the flow.

        points ``(N, 2)`` pixel ``(x, y)`` in the source (``direction="src->trg"``)
        or target (``"trg->src"``) image → ``(N, 2)`` pixels in the other image.
        """
        return None

    # -- weights ------------------------------------------------------------------------------

    @classmethod
    def read_released(cls, path: Path, backbone: str | None):
        """The adapter from the authors' released file ``path`` to this model's names.

        Returns :class:`semcorr.models.pretrained.ResolvedWeights` (architecture
        ``config`` read from the file, ``state`` under this model's names);
        :class:`WeightsError` when ``path`` is not in the authors' layout.
        Models without a released layout refuse every file that is not a
        semcorr checkpoint.
        """
        from ..errors import WeightsError

        raise WeightsError(
            f"'{path}' is not a semcorr checkpoint (.safetensors with its JSON sidecar), and {cls.name} "
            "reads no authors' released file"
        )

    def head_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights of everything but a frozen backbone (what a checkpoint must keep)."""
        frozen = not any(p.requires_grad for p in self.backbone.parameters())
        return {k: v for k, v in self.state_dict().items() if not (frozen and k.startswith("backbone."))}


def load_head_weights(model: CorrespondenceModel, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a checkpoint's weights into ``model``.

    Every non-backbone parameter of the model must be present (strict for the
    head); backbone entries are loaded when present (a fine-tuned backbone).
    """
    from ..errors import WeightsError

    own = model.state_dict()
    head_keys = [k for k in own if not k.startswith("backbone.")]
    missing = [k for k in head_keys if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        detail = f"missing '{missing[0]}'" if missing else f"unexpected '{unexpected[0]}'"
        raise WeightsError(
            f"'{source}' does not fit {model.name} with backbone {model.backbone.name} "
            f"({len(missing)} missing, {len(unexpected)} unexpected weights; {detail})"
        )
    load_matching_shapes(model, own, state, source)


def load_matching_shapes(
    model: CorrespondenceModel, own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], source: str
) -> None:
    """Load ``state`` into ``model`` (``own`` = its state dict; keys already checked) after checking every shape."""
    from ..errors import WeightsError

    for k, v in state.items():
        if own[k].shape != v.shape:
            raise WeightsError(f"'{source}': weight '{k}' has shape {tuple(v.shape)}, the model expects {tuple(own[k].shape)}")
    model.load_state_dict(state, strict=False)


def load_resolved(model: CorrespondenceModel, resolved, optional: tuple[str, ...] = ()) -> list[str]:
    """Load :class:`semcorr.models.pretrained.ResolvedWeights` into ``model`` and record their id.

    Strict for the head (:func:`load_head_weights`); ``optional``: prefixes of
    a part the weights may lack (:func:`fill_optional_part`). Returns the
    prefixes for which the model kept its own values. Fresh weights load nothing.
    """
    model.weights_id = resolved.weights_id
    if resolved.state is None:
        return []
    state, kept = fill_optional_part(model, resolved.state, optional)
    load_head_weights(model, state, str(resolved.path))
    return kept


def load_project_checkpoint(model: CorrespondenceModel, path, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """Load a project checkpoint (``.safetensors`` + JSON sidecar) into ``model``; return its metadata.

    Read by :func:`semcorr.models.pretrained.read_checkpoint` (sha256 checked,
    made for the same model). ``optional``: prefixes of a part the checkpoint
    may lack altogether (see :func:`fill_optional_part`); ``meta["kept_own"]``
    then lists the prefixes kept.
    """
    from .pretrained import read_checkpoint

    resolved = read_checkpoint(Path(path), type(model), None)
    state, kept = fill_optional_part(model, resolved.state or {}, optional)
    load_head_weights(model, state, str(path))
    return dict(resolved.meta, kept_own=kept)


def fill_optional_part(
    model: CorrespondenceModel, state: dict[str, torch.Tensor], prefixes: tuple[str, ...]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Weights ``state`` for ``model`` when a part may be absent from them.

    For each prefix the model has but ``state`` has no key under, the model's
    own (freshly initialised) values are used; a prefix ``state`` has but the
    model lacks is dropped. Returns the completed state and the prefixes for
    which the model's own values were kept.
    """
    own = model.state_dict()
    out = dict(state)
    kept = []
    for prefix in prefixes:
        in_model = [k for k in own if k.startswith(prefix)]
        in_state = [k for k in state if k.startswith(prefix)]
        if in_model and not in_state:
            out.update({k: own[k] for k in in_model})
            kept.append(prefix)
        elif in_state and not in_model:
            for k in in_state:
                out.pop(k)
    return out, kept
