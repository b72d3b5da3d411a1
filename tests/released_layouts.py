"""Look-alike authors' checkpoints, built from the exact released layouts in ``shared/official-checkpoints``.

Each ``<model>.json`` lists every entry of the released file: ``"a/b"`` is key
``b`` inside the dict stored under ``a``; a tensor entry reads
``"tensor [shape] dtype"``; the other entries give their type and value
(``"int 5"``, ``"float 0.5"``, ``"numpy [5] float64"``,
``{"argparse.Namespace": {...}}``, ``{"dict with keys": [...]}`` for an
optimizer state). :func:`lookalike_checkpoint` writes a file with exactly
those entries — random values, the released key names, shapes, dtypes and
nesting, the Namespace and numpy entries — as the public training code's
``torch.save`` would.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from conftest import SHARED

LAYOUTS = SHARED.parent / "official-checkpoints"
_TENSOR = re.compile(r"^tensor \[([0-9, ]*)\] (\w+)$")
_NUMPY = re.compile(r"^numpy \[([0-9, ]*)\] (\w+)$")


def released_layout(model: str) -> dict[str, Any]:
    """The released layout of ``model`` (ncnet, dccnet, sfnet, mmnet), in stored order."""
    return json.loads((LAYOUTS / f"{model}.json").read_text())


def tensor_entries(model: str) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{full key: (shape, dtype)}`` of the layout's tensors."""
    out = {}
    for key, value in released_layout(model).items():
        m = _TENSOR.match(value) if isinstance(value, str) else None
        if m:
            out[key] = (tuple(int(v) for v in m.group(1).replace(" ", "").split(",") if v), m.group(2))
    return out


def _shape(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.replace(" ", "").split(",") if v)


def _value(key: str, spec: Any, gen: torch.Generator, scale: float) -> Any:
    if isinstance(spec, dict) and "argparse.Namespace" in spec:
        return argparse.Namespace(**spec["argparse.Namespace"])
    if isinstance(spec, dict) and "dict with keys" in spec:  # an Adam optimizer's state_dict
        return {"state": {}, "param_groups": [{"lr": 5e-4, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0, "amsgrad": False, "params": [0, 1]}]}
    if not isinstance(spec, str):
        raise ValueError(f"{key}: unknown layout entry {spec!r}")
    m = _TENSOR.match(spec)
    if m:
        shape, dtype = _shape(m.group(1)), m.group(2)
        if dtype == "int64":
            return torch.zeros(shape, dtype=torch.int64)
        if key.endswith("running_var"):
            return torch.rand(shape, generator=gen) + 0.5
        return torch.randn(shape, generator=gen) * scale
    m = _NUMPY.match(spec)
    if m:
        return np.linspace(-0.5, 0.5, int(np.prod(_shape(m.group(1))))).astype(m.group(2)).reshape(_shape(m.group(1)))
    kind, _, text = spec.partition(" ")
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    raise ValueError(f"{key}: unknown layout entry {spec!r}")


def lookalike_checkpoint(
    model: str, path: Path, seed: int = 0, values: dict[str, torch.Tensor] | None = None, scale: float = 0.02
) -> dict[str, Any]:
    """Write ``path`` in ``model``'s released layout; returns the saved object.

    ``values`` replaces chosen tensors (full layout keys, e.g.
    ``"state_dict/module.NeighConsensus.conv.0.weight"``); their shapes and
    dtypes must be the layout's.
    """
    gen = torch.Generator().manual_seed(seed)
    values = values or {}
    layout = released_layout(model)
    unknown = set(values) - set(layout)
    if unknown:
        raise KeyError(f"not in the {model} layout: {sorted(unknown)[:3]}")
    obj: dict[str, Any] = {}
    for key, spec in layout.items():
        v = values[key] if key in values else _value(key, spec, gen, scale)
        if isinstance(v, torch.Tensor):
            shape, dtype = _shape(_TENSOR.match(spec).group(1)), _TENSOR.match(spec).group(2)
            assert tuple(v.shape) == shape and str(v.dtype) == f"torch.{dtype}", f"{key}: {tuple(v.shape)} {v.dtype}"
        top, _, inner = key.partition("/")
        if inner:
            obj.setdefault(top, {})[inner] = v
        else:
            obj[top] = v
    torch.save(obj, path)
    return obj
