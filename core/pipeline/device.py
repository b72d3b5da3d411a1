"""Which device a stage runs on."""

from __future__ import annotations

import torch

from ..errors import UsageError, param


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is a usage error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = param("device")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"{dev} cuda was asked for but no CUDA GPU is available (use {dev} auto or cpu)")
    if device != "cpu" and not device.startswith("cuda"):
        raise UsageError(f"{dev} must be auto, cpu or cuda, not '{device}'")
    return torch.device(device)
