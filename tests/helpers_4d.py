"""Helpers shared by the 4D-correlation tests (conv4d, NC-Net, DCCNet).

Import the ``one_thread`` fixture into a test module to make it apply there
(it is autouse within the modules that import it).
"""

from __future__ import annotations

import collections

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are tiny: one thread avoids OpenMP spin-waiting on shared cores (≈5× faster there)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def transpose_6d(x: torch.Tensor) -> torch.Tensor:
    """Transpose a 6D consensus tensor ``(B, C, hA, wA, hB, wB)``."""
    return x.permute(0, 1, 4, 5, 2, 3)


def randomize(module: torch.nn.Module, seed: int = 0) -> None:
    """Weights with both signs and positive biases, so ReLUs neither vanish nor pass everything."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.rand(p.shape, generator=g) * 0.2 + 0.01 if name.endswith("bias") else (torch.rand(p.shape, generator=g) - 0.4) * 0.3)


def resnet_lookalike_features(arch: str, seed: int) -> collections.OrderedDict:
    """``FeatureExtraction.model.*`` entries (conv1 … layer3) of a random ResNet, as the public code names them."""
    import torchvision

    with torch.device("meta"):
        shapes = {k: v.shape for k, v in getattr(torchvision.models, arch)().state_dict().items()}
    g = torch.Generator().manual_seed(seed)
    index = {"conv1": 0, "bn1": 1, "layer1": 4, "layer2": 5, "layer3": 6}
    out = collections.OrderedDict()
    for k, shape in shapes.items():
        top, _, rest = k.partition(".")
        if top not in index or k.endswith("num_batches_tracked"):
            continue  # layer4/fc are cut off; old files have no BatchNorm counters
        t = torch.rand(shape, generator=g) + 0.5 if "running_var" in k else torch.randn(shape, generator=g) * 0.02
        out[f"FeatureExtraction.model.{index[top]}.{rest}"] = t
    return out
