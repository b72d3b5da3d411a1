"""Trainable adaptation layers placed on top of a frozen backbone (SFNet).

SFNet (Lee et al., CVPR 2019) adapts each frozen ResNet-101 feature map with a
stack of residual convolution blocks, ``x ← x + ReLU(BN(Conv_k×k(x)))``, which
keeps the channel count and the spatial grid. The module and parameter names
follow the authors' code (``adap_layer_feat3`` / ``adap_layer_feat4`` with
blocks ``conv1``, ``conv2``, each ``nn.Sequential(Conv2d, BatchNorm2d, ReLU)``),
so the released ``best_checkpoint.pt`` state_dicts load without renaming:
``conv1.0.weight``, ``conv1.0.bias``, ``conv1.1.weight``, ``conv1.1.bias``,
``conv1.1.running_mean``, ``conv1.1.running_var``, ``conv1.1.num_batches_tracked``,
then the same for ``conv2``.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def conv_bn_relu(channels: int, kernel_size: int) -> nn.Sequential:
    """``Conv2d(C, C, k, padding=k//2) → BatchNorm2d(C) → ReLU``: ``(B, C, h, w) → (B, C, h, w)``.

    Indices 0/1/2 are part of the parameter names (``conv1.0.weight``).
    """
    if kernel_size % 2 != 1:
        raise ValueError(f"kernel_size must be odd to keep the grid, got {kernel_size}")
    return nn.Sequential(
        nn.Conv2d(channels, channels, kernel_size=kernel_size, stride=1, padding=kernel_size // 2),
        nn.BatchNorm2d(channels),
        nn.ReLU(),
    )


class AdaptationLayer(nn.Module):
    """A stack of residual blocks ``x ← x + conv_bn_relu_i(x)``, blocks named ``conv1``, ``conv2``, ….

    ``forward(x (B, C, h, w)) -> (B, C, h, w)``. SFNet uses two blocks with
    ``kernel_size`` 5 on ResNet ``layer3`` and 3 on ``layer4``.
    """

    def __init__(self, channels: int, kernel_size: int, blocks: int = 2):
        super().__init__()
        if blocks < 1:
            raise ValueError(f"an adaptation layer needs at least one block, got {blocks}")
        self.channels = channels
        self.kernel_size = kernel_size
        self.block_names = [f"conv{i + 1}" for i in range(blocks)]
        for name in self.block_names:
            self.add_module(name, conv_bn_relu(channels, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"adaptation layer expects (B, {self.channels}, h, w), got {tuple(x.shape)}")
        for name in self.block_names:
            x = x + getattr(self, name)(x)
        return x


class MaskRegression(nn.Module):
    """A foreground-mask regressor on an adapted feature map: ``Conv2d(C, 1, 3, padding=1)`` then a sigmoid.

    ``forward(x (B, C, h, w)) -> (B, 1, h, w)`` in (0, 1). SFNet's object
    co-segmentation (TPAMI 2020) adds one on each adapted map; the form here
    (one 3×3 convolution) is semcorr's, see :mod:`semcorr.models.sfnet`.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.conv = nn.Conv2d(channels, 1, kernel_size=3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"mask regression expects (B, {self.channels}, h, w), got {tuple(x.shape)}")
        return torch.sigmoid(self.conv(x))
