"""Optimizers over a model's trainable parameters, with the learning rate set per step."""

from __future__ import annotations

import torch

from ..errors import UsageError
from .hyper import Hyper


def trainable_groups(model: torch.nn.Module, base_lr: float) -> list[dict]:
    """The model's parameter groups: ``model.param_groups(base_lr)`` when defined, else every
    parameter with ``requires_grad`` at ``base_lr``. Groups keep their own ``lr`` when they set one."""
    if hasattr(model, "param_groups") and callable(model.param_groups):
        groups = [dict(g) for g in model.param_groups(base_lr)]
    else:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    out = []
    for g in groups:
        params = [p for p in g["params"] if p.requires_grad]
        if params:
            out.append(dict(g, params=params, lr=float(g.get("lr", base_lr))))
    if not out:
        raise UsageError(f"model '{getattr(model, 'name', '?')}' has no trainable parameters")
    return out


def build_optimizer(model: torch.nn.Module, hyper: Hyper) -> torch.optim.Optimizer:
    """Adam or SGD over :func:`trainable_groups`; each group remembers its ``initial_lr``."""
    groups = trainable_groups(model, hyper.lr)
    for g in groups:
        g["initial_lr"] = g["lr"]
    if hyper.optimizer == "adam":
        return torch.optim.Adam(groups, lr=hyper.lr, betas=hyper.betas, weight_decay=hyper.weight_decay)
    return torch.optim.SGD(groups, lr=hyper.lr, momentum=hyper.momentum, weight_decay=hyper.weight_decay)


def set_lr_factor(optimizer: torch.optim.Optimizer, factor: float) -> float:
    """Set every group's lr to ``initial_lr * factor``; returns the first group's lr."""
    for g in optimizer.param_groups:
        g["lr"] = g["initial_lr"] * factor
    return optimizer.param_groups[0]["lr"]
