"""Safe reading of the authors' released checkpoints (``.pth.tar``), and their key layouts.

The public NC-Net and DCCNet code saves ``torch.save({"state_dict": ...,
"args": argparse.Namespace(...), "epoch": ..., "optimizer": ..., "train_loss":
numpy array, ...})``. Reading such a file must not run arbitrary pickled
code, so :func:`read_official_checkpoint` uses ``torch.load(weights_only=True)``
with exactly these extra classes allowed:

* ``argparse.Namespace`` (the training arguments);
* numpy's plain array and scalar reconstruction (``numpy.ndarray``,
  ``numpy.dtype``, ``numpy.core.multiarray._reconstruct`` / ``scalar``, under
  their numpy 1 and numpy 2 module names) — the files keep the loss
  histories as numpy arrays. Their contents go through the same restricted
  unpickler.

Anything else (another class, a function, a ``__reduce__`` payload) is refused
with a :class:`~semcorr.errors.WeightsError`; nothing from the file is executed.

Key layouts handled here (the SFNet / MMNet loaders can reuse the helpers):

* ``Conv4d`` weights are stored permuted: the public ``Conv4d`` keeps
  ``weight.permute(2, 0, 1, 3, 4, 5)`` of the ``(out, in, k1, k2, k3, k4)``
  tensor, i.e. ``(k1, out, in, k2, k3, k4)`` (``pre_permuted_filters=True``);
  :func:`conv4d_weight_from_official` undoes it.
* ResNet features are ``FeatureExtraction.model.<i>.*``, ``i`` indexing
  ``[conv1, bn1, relu, maxpool, layer1, layer2, layer3, …]`` (older files say
  ``FeatureExtraction.vgg.*``); :func:`torchvision_resnet_state` maps them to
  torchvision names (``conv1.weight``, ``layer3.22.bn2.running_mean``).
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import WeightsError
from ..weights import refuse_non_finite_weights

RESNET_SEQUENTIAL_NAMES = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
FEATURE_PREFIXES = ("FeatureExtraction.model.", "FeatureExtraction.vgg.")


def _numpy_globals() -> list[Any]:
    """numpy's array/scalar reconstruction, under the names old and new pickles use."""
    try:
        from numpy._core import multiarray as ma  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray as ma  # type: ignore[no-redef]
    out: list[Any] = [np.ndarray, np.dtype]
    # numpy >= 1.25 rebuilds a dtype as an instance of its class (numpy.dtypes.Float64DType, …):
    # the plain numeric ones only (no object, string or structured dtypes)
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        for code in "?bhilqBHILQefdgFDG":
            out.append(type(np.dtype(code)))
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        out += [(ma._reconstruct, f"{mod}._reconstruct"), (ma.scalar, f"{mod}.scalar")]
    return out


def allowed_globals() -> list[Any]:
    """The only non-tensor globals an authors' checkpoint may reference."""
    return [argparse.Namespace, *_numpy_globals()]


@dataclass
class OfficialCheckpoint:
    """What an authors' checkpoint holds: its weights and its training arguments."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    args: dict[str, Any] = field(default_factory=dict)

    def keys_under(self, prefix: str) -> dict[str, torch.Tensor]:
        """Entries under ``prefix`` with the prefix removed, in stored order."""
        return {k[len(prefix):]: v for k, v in self.state_dict.items() if k.startswith(prefix)}


def read_official_checkpoint(path: str | Path) -> OfficialCheckpoint:
    """Load an authors' ``.pth.tar`` safely (see the module docstring).

    Raises :class:`WeightsError` when the file is missing, references any
    class or function outside the allow-list, or has no ``state_dict``.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file '{path}' does not exist")
    try:
        with torch.serialization.safe_globals(allowed_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        detail = _refusal_reason(str(exc))
        raise WeightsError(
            f"'{path}' was refused: it is not a checkpoint of tensors, training arguments and numbers only "
            f"({detail[:200]}); semcorr never unpickles arbitrary objects"
        ) from None
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        raise WeightsError(f"'{path}' is not an NC-Net/DCCNet checkpoint (no 'state_dict' entry)")
    refuse_non_finite_weights(obj["state_dict"], path)
    state = {}
    for k, v in obj["state_dict"].items():
        if not isinstance(v, torch.Tensor):
            raise WeightsError(f"'{path}': state_dict entry '{k}' is not a tensor")
        state[k[7:] if k.startswith("module.") else k] = v
    args = obj.get("args")
    args_dict = vars(args) if isinstance(args, argparse.Namespace) else dict(args) if isinstance(args, dict) else {}
    return OfficialCheckpoint(path=path, state_dict=state, args=args_dict)


def _refusal_reason(message: str) -> str:
    """The line of a ``torch.load`` error that says what was refused."""
    lines = [ln.strip() for ln in message.strip().splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        if "WeightsUnpickler error" in ln:
            rest = ln.split("WeightsUnpickler error:", 1)[-1].strip()
            reason = rest or (lines[i + 1] if i + 1 < len(lines) else ln)
            return reason.split(" Please use", 1)[0].rstrip(". ")
    return lines[0] if lines else "unknown error"


# ----------------------------------------------------------------------------- Conv4d layout


def conv4d_weight_from_official(stored: torch.Tensor) -> torch.Tensor:
    """Public ``Conv4d`` weight ``(k1, out, in, k2, k3, k4)`` → ``(out, in, k1, k2, k3, k4)``."""
    if stored.dim() != 6:
        raise WeightsError(f"a Conv4d weight has 6 dimensions, got shape {tuple(stored.shape)}")
    return stored.permute(1, 2, 0, 3, 4, 5).contiguous()


def conv4d_weight_to_official(weight: torch.Tensor) -> torch.Tensor:
    """``(out, in, k1, k2, k3, k4)`` → the public code's stored ``(k1, out, in, k2, k3, k4)``."""
    return weight.permute(2, 0, 1, 3, 4, 5).contiguous()


def official_conv4d_stack(entries: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """A public ``NeighConsensus`` (``conv.0``, ``conv.2``, …) → our ``conv.<i>.weight/bias``.

    ``entries``: the checkpoint's keys under the module's prefix. Weights are
    un-permuted; layer indices are kept (same ``Sequential`` layout).
    """
    out = {}
    for k, v in entries.items():
        m = re.fullmatch(r"conv\.(\d+)\.(weight|bias)", k)
        if not m:
            raise WeightsError(f"{where}: unexpected key '{k}' in a NeighConsensus block")
        out[k] = conv4d_weight_from_official(v) if m.group(2) == "weight" else v
    return out


def modules_in_order(entries: dict[str, torch.Tensor]) -> list[tuple[str, dict[str, torch.Tensor]]]:
    """Group ``{"a.b.weight": t, "a.b.bias": t2}`` by module path, keeping the stored order."""
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in entries.items():
        module, _, leaf = k.rpartition(".")
        groups.setdefault(module, {})[leaf] = v
    return list(groups.items())


# ----------------------------------------------------------------------------- ResNet features


def feature_prefix(state: dict[str, torch.Tensor]) -> str | None:
    """Which of ``FeatureExtraction.model.`` / ``.vgg.`` the checkpoint uses (None: no backbone)."""
    for prefix in FEATURE_PREFIXES:
        if any(k.startswith(prefix) for k in state):
            return prefix
    return None


def torchvision_resnet_state(entries: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """``nn.Sequential(conv1, bn1, relu, maxpool, layer1, …)`` keys → torchvision ResNet keys.

    ``entries``: keys under ``FeatureExtraction.model.`` (``"6.22.conv1.weight"``)
    → ``{"layer3.22.conv1.weight": …}``.
    """
    out = {}
    for k, v in entries.items():
        head, _, rest = k.partition(".")
        if not head.isdigit() or int(head) >= len(RESNET_SEQUENTIAL_NAMES):
            raise WeightsError(f"{where}: unexpected backbone key 'FeatureExtraction.model.{k}'")
        out[f"{RESNET_SEQUENTIAL_NAMES[int(head)]}.{rest}"] = v
    return out


def resnet_arch_of(tv_state: dict[str, torch.Tensor]) -> tuple[str, str]:
    """``(backbone name, deepest stage)`` of a torchvision-named ResNet state: ``("resnet101", "layer3")``."""
    blocks: dict[int, set[int]] = {}
    for k in tv_state:
        m = re.match(r"layer(\d)\.(\d+)\.", k)
        if m:
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    if not blocks:
        raise WeightsError("the checkpoint's backbone holds no ResNet blocks")
    deepest = max(blocks)
    counts = [len(blocks.get(s, ())) for s in range(1, deepest + 1)]
    known = {"resnet50": [3, 4, 6, 3], "resnet101": [3, 4, 23, 3]}
    for name, full in known.items():
        if counts == full[:deepest]:
            return name, f"layer{deepest}"
    raise WeightsError(f"the checkpoint's backbone has {counts} blocks per stage: not a ResNet-50/101")


def feature_backbone_state(backbone, tv_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision ResNet keys → keys of a :class:`semcorr.backbones.FeatureBackbone` (``stages.<i>.…``).

    ``conv1``/``bn1`` go to the stem stage (``stages.0.0`` / ``stages.0.1``),
    ``layerS.N.rest`` to the stage named ``layerS.N``.
    """
    index = {name: i for i, name in enumerate(backbone.stage_names)}
    out = {}
    for k, v in tv_state.items():
        if k.startswith("conv1."):
            out[f"stages.{index['stem']}.0.{k[6:]}"] = v
        elif k.startswith("bn1."):
            out[f"stages.{index['stem']}.1.{k[4:]}"] = v
        else:
            m = re.match(r"(layer\d\.\d+)\.(.*)", k)
            if not m or m.group(1) not in index:
                raise WeightsError(f"backbone key '{k}' has no place in {backbone.name}")
            out[f"stages.{index[m.group(1)]}.{m.group(2)}"] = v
    return out


def official_backbone_state(backbone, ckpt: OfficialCheckpoint, layer: str) -> dict[str, torch.Tensor]:
    """The checkpoint's ResNet features under ``backbone``'s names (``stages.<i>.…``), every stage up to ``layer``.

    ``backbone``: a :class:`semcorr.backbones.FeatureBackbone` of the right
    architecture (its weights are not read). BatchNorm ``num_batches_tracked``
    counters may be absent (files from before PyTorch 0.4.1).
    """
    prefix = feature_prefix(ckpt.state_dict)
    if prefix is None:
        raise WeightsError(f"'{ckpt.path}' holds no backbone weights (no 'FeatureExtraction.model.*' keys)")
    tv = torchvision_resnet_state(ckpt.keys_under(prefix), str(ckpt.path))
    state = feature_backbone_state(backbone, tv)
    last = backbone.stage_names.index(backbone.resolve(layer))
    own = backbone.state_dict()
    needed = [
        k for k in own if int(k.split(".")[1]) <= last and not k.endswith("num_batches_tracked")
    ]
    missing = [k for k in needed if k not in state]
    if missing:
        raise WeightsError(f"'{ckpt.path}': the backbone lacks {len(missing)} weights up to {layer}, e.g. '{missing[0]}'")
    for k, v in state.items():
        if k in own and own[k].shape != v.shape:
            raise WeightsError(f"'{ckpt.path}': backbone weight '{k}' has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}")
    return {k: v for k, v in state.items() if k in own}
