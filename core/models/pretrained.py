"""Where a model's weights come from: the files shipped with semcorr, and one resolver for every ``weights`` spec.

* :data:`SHIPPED_WEIGHTS` lists every weights file shipped in ``core/weights/``
  as one :class:`ShippedWeights` object (file, pinned sha256, model, backbone,
  the backbone layers the model reads, and the recipe and metrics of its JSON
  sidecar), each with one :meth:`ShippedWeights.verify`.
* :func:`resolve` turns a builder's ``weights`` argument into
  :class:`ResolvedWeights` (the architecture the weights were made for, a state
  dict under the model's own names, and the weights id the model records):

  ============================== ==================================================
  ``None``, ``"none"``, ``"random"`` a freshly initialised head (id ``"fresh"``)
  ``"default"``                  the shipped file of the model and backbone, verified
  ``FILE.safetensors`` + sidecar a semcorr checkpoint (id ``"file:<name>:<sha12>"``)
  any other file                 the authors' released file, read by the model's own
                                 adapter (id ``"released-file:<name>:<sha12>"``)
  ============================== ==================================================

  The adapter from the authors' layout to the model's is the model class's
  :meth:`~semcorr.models.base.CorrespondenceModel.read_released`; nothing else
  differs between models. :func:`convert_released` (``semcorr convert-weights``)
  is the same path followed by :func:`semcorr.weights.save_checkpoint`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .. import weights as weight_files
from ..errors import UsageError, WeightsError, param

if TYPE_CHECKING:  # pragma: no cover
    from .base import CorrespondenceModel

#: Prefix of the weights id of a model built from the authors' released file.
RELEASED_PREFIX = "released-"
#: Earlier spellings of :data:`RELEASED_PREFIX` found in records written before it was the only one.
OLD_RELEASED_PREFIXES = ("official-",)
#: The ``weights`` specs that mean "a freshly initialised head".
FRESH_SPECS = (None, "none", "random")
#: The ``weights`` spec of the file shipped for the model and backbone.
DEFAULT_SPEC = "default"
#: Weights id of a freshly initialised head.
FRESH_ID = "fresh"


def released_weights_id(path: str | Path) -> str:
    """``"released-file:<name>:<sha256[:12]>"``: the id of a model built from the authors' file ``path``."""
    return RELEASED_PREFIX + weight_files.weights_file_id(path)


def weights_file_name(weights_id: str) -> str | None:
    """The file name inside a weights id (``file:``, ``released-file:`` or the older ``official-file:``), else None."""
    for prefix in ("", RELEASED_PREFIX, *OLD_RELEASED_PREFIXES):
        if weights_id.startswith(prefix + "file:"):
            return weights_id[len(prefix) :].split(":")[1]
    return None


# ----------------------------------------------------------------------------- shipped files


@dataclass(frozen=True)
class ShippedWeights:
    """One weights file shipped with semcorr (``core/weights/<model>_<backbone>.safetensors`` + its sidecar).

    ``sha256`` is pinned in code (:data:`semcorr.weights.SHIPPED_SHA256`), so a
    file and its sidecar cannot be swapped together unnoticed; ``layers`` are
    the backbone layers the model built from it reads (``model.required_layers``).
    """

    model: str
    backbone: str
    layers: tuple[str, ...]

    @property
    def file(self) -> str:
        return f"{self.model}_{self.backbone}.safetensors"

    @property
    def path(self) -> Path:
        return weight_files.SHIPPED_DIR / self.file

    @property
    def sha256(self) -> str:
        return weight_files.SHIPPED_SHA256[self.file]

    @property
    def sidecar(self) -> dict[str, Any]:
        """The JSON sidecar (``{}`` when absent)."""
        return weight_files.read_sidecar(self.path)

    @property
    def config(self) -> dict[str, Any]:
        """The architecture the weights were trained with (the sidecar's ``config``)."""
        return dict(self.sidecar.get("config", {}))

    @property
    def recipe(self) -> Any:
        """How the weights were trained (the sidecar's ``recipe``)."""
        return self.sidecar.get("recipe")

    @property
    def metrics(self) -> Any:
        """What they scored after training (the sidecar's ``metrics``)."""
        return self.sidecar.get("metrics")

    def verify(self) -> Path:
        """The file's path, after checking it is there and hashes to :attr:`sha256`; else :class:`WeightsError`."""
        if not self.path.is_file():
            raise WeightsError(f"the shipped weights file '{self.path}' is missing; reinstall semcorr")
        weight_files.verify_sha256(self.path, self.sha256)
        return self.path


#: MMNet reads every block of the backbone (semcorr.backbones.block_layers).
_MMNET_MOBILENET_V2_LAYERS = tuple(f"features.{i}" for i in range(2, 19))

#: Every weights file shipped with semcorr.
SHIPPED_WEIGHTS: tuple[ShippedWeights, ...] = (
    ShippedWeights("sfnet", "mobilenet_v2", ("features.13", "features.17")),
    ShippedWeights("ncnet", "mobilenet_v2", ("features.13", "features.6", "features.10", "features.16")),
    ShippedWeights("dccnet", "mobilenet_v2", ("features.13", "features.6", "features.10", "features.16")),
    ShippedWeights("mmnet", "mobilenet_v2", _MMNET_MOBILENET_V2_LAYERS),
)


def find_shipped(model: str, backbone: str) -> ShippedWeights | None:
    """The shipped weights of ``model`` on ``backbone``, or None."""
    for entry in SHIPPED_WEIGHTS:
        if (entry.model, entry.backbone) == (model, backbone):
            return entry
    return None


def shipped_weights(model: str, backbone: str) -> ShippedWeights:
    """The shipped weights of ``model`` on ``backbone``; :class:`WeightsError` when there are none."""
    entry = find_shipped(model, backbone)
    if entry is None or not entry.path.is_file():
        raise WeightsError(
            f"no {model} weights are shipped for backbone {backbone}; pass {param('weights')} FILE "
            "(a semcorr checkpoint .safetensors or the authors' released file), or train some (semcorr train)"
        )
    return entry


# ----------------------------------------------------------------------------- the resolver


@dataclass
class ResolvedWeights:
    """What a ``weights`` spec stands for.

    * ``kind``: ``"fresh"``, ``"shipped"``, ``"checkpoint"`` (semcorr's own file) or ``"released"`` (the authors');
    * ``config``: the architecture the weights were made for (a checkpoint's
      sidecar ``config``, or read from the authors' file; ``{}`` when fresh or unknown);
    * ``state``: ``{name: tensor}`` under the model's own names (None when fresh);
    * ``weights_id``: what the model records (``"fresh"``, ``"file:…"``, ``"released-file:…"``);
    * ``path``: the file, ``meta``: a checkpoint's sidecar.
    """

    kind: str
    config: dict[str, Any] = field(default_factory=dict)
    state: dict[str, torch.Tensor] | None = None
    weights_id: str = FRESH_ID
    path: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def carries_backbone(self) -> bool:
        """True when the state holds backbone weights (a fine-tuned or the authors' backbone)."""
        return self.state is not None and any(k.startswith("backbone.") for k in self.state)

    def without_backbone(self) -> ResolvedWeights:
        """The same weights less any backbone entries."""
        state = None if self.state is None else {k: v for k, v in self.state.items() if not k.startswith("backbone.")}
        return ResolvedWeights(self.kind, self.config, state, self.weights_id, self.path, self.meta)


def resolve(spec: str | Path | None, model: type[CorrespondenceModel], backbone: str | None = None) -> ResolvedWeights:
    """Resolve a ``weights`` spec for model class ``model`` (see the module docstring).

    ``backbone``: the backbone asked for (None: the one the weights were made
    for, else ``model.default_backbone``). A checkpoint or released file made
    for another backbone, or for another model, is refused with
    :class:`WeightsError` (DCCNet accepts an NC-Net checkpoint:
    :attr:`~semcorr.models.base.CorrespondenceModel.accepts_checkpoints_of`).
    """
    is_file_spec = isinstance(spec, Path)  # a Path is always a file, even one named "default"
    if spec is None or (not is_file_spec and str(spec).strip().lower() in FRESH_SPECS[1:]):
        return ResolvedWeights("fresh")
    if not is_file_spec and str(spec) == DEFAULT_SPEC:
        entry = shipped_weights(model.name, backbone or model.default_backbone)
        resolved = read_checkpoint(entry.verify(), model, backbone)
        resolved.kind = "shipped"
        return resolved
    path = Path(spec)
    if not path.is_file():
        raise WeightsError(f"weights file '{path}' does not exist")
    if path.suffix == ".safetensors" and (weight_files.sidecar_path(path).is_file() or not model.reads_bare_safetensors):
        return read_checkpoint(path, model, backbone)
    return model.read_released(path, backbone)


def read_checkpoint(path: Path, model: type[CorrespondenceModel], backbone: str | None) -> ResolvedWeights:
    """A semcorr checkpoint (``.safetensors`` + sidecar, sha256 checked) for ``model`` on ``backbone``."""
    state, meta = weight_files.load_checkpoint(path)
    config = dict(meta.get("config", {}))
    made_for = config.get("model")
    if made_for not in (None, model.name, *model.accepts_checkpoints_of):
        raise WeightsError(f"'{path}' holds {made_for} weights, not {model.name}")
    check_backbone(path, config.get("backbone"), backbone)
    return ResolvedWeights("checkpoint", config, state, weight_files.weights_file_id(path), path, meta)


def check_backbone(path: Path, made_for: str | None, asked: str | None) -> None:
    """:class:`WeightsError` when weights made for backbone ``made_for`` are asked for on backbone ``asked``."""
    if made_for is not None and asked is not None and made_for != asked:
        raise WeightsError(f"'{path}' was trained on backbone {made_for}; use {param('backbone')} {made_for}")


def released_weights(path: Path, config: dict[str, Any], state: dict[str, torch.Tensor]) -> ResolvedWeights:
    """What an adapter (:meth:`~semcorr.models.base.CorrespondenceModel.read_released`) returns for the authors' file."""
    return ResolvedWeights("released", config, state, released_weights_id(path), path)


def convert_released(source: str | Path, output: str | Path, model: str, backbone: str | None = None) -> ResolvedWeights:
    """Convert the authors' released file ``source`` of ``model`` into a semcorr checkpoint ``output``.

    The weights go through :func:`resolve` (the same adapter ``--weights FILE``
    uses; a file already in semcorr's layout is re-written as it is) and are written with their sidecar (config, file name and sha256 of
    the source). ``backbone``: the one the file was trained with (None: read
    from the file where it says). Returns the resolved weights.
    """
    import semcorr

    from . import get_model_class

    output = Path(output)
    if output.suffix != ".safetensors":
        raise UsageError(f"{param('output')} must end in .safetensors")
    cls = get_model_class(model)
    resolved = resolve(Path(source), cls, backbone)
    config = dict(resolved.config, model=cls.name, backbone_weights="default")
    meta = {
        "config": config,
        "converted_from": Path(source).name,
        "source_sha256": weight_files.sha256_file(source),
        "semcorr_version": semcorr.__version__,
    }
    weight_files.save_checkpoint(output, resolved.state or {}, meta)
    return resolved


__all__ = [
    "RELEASED_PREFIX",
    "ResolvedWeights",
    "SHIPPED_WEIGHTS",
    "ShippedWeights",
    "convert_released",
    "find_shipped",
    "resolve",
    "shipped_weights",
    "weights_file_name",
]
