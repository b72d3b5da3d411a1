"""The resumable training state, without pickle.

One ``.safetensors`` file (written atomically: temporary file + rename) holds
every tensor — the trained weights, the optimizer's per-parameter state, the
torch CPU/CUDA generator states, numpy's Mersenne-Twister key — and its
metadata field holds one JSON document with everything else: the position in
the data order, the optimizer's parameter groups and scalars, the ``random``
and numpy scalar states, early-stopping counters.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from ..files import atomic_write_bytes

FORMAT = "semcorr-train-state"
VERSION = 1


@dataclass
class Progress:
    """Where training stands after ``step`` optimizer updates.

    ``epoch`` / ``step_in_epoch``: position of the next batch in the data
    order; ``best_metric`` / ``best_step``: the best validation so far;
    ``bad_validations``: validations since it; ``finished``: ``None``,
    ``"completed"`` or ``"early-stop"``; ``last_val``: the latest validation.
    """

    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    bad_validations: int = 0
    finished: str | None = None
    last_val: dict[str, float] = field(default_factory=dict)


# ----------------------------------------------------------------------------- optimizer


def optimizer_to_tensors(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``optimizer.state_dict()`` → (tensors named ``optim/<param>/<key>``, JSON-able structure)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{pid}/{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in state["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars, "params": sorted(int(p) for p in state["state"])}


def optimizer_from_tensors(tensors: dict[str, torch.Tensor], structure: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`optimizer_to_tensors`."""
    state: dict[int, dict[str, Any]] = {int(p): {} for p in structure["params"]}
    for name, value in tensors.items():
        if name.startswith("optim/"):
            _, pid, key = name.split("/", 2)
            state[int(pid)][key] = value
    for pid, entries in structure["scalars"].items():
        state[int(pid)].update(entries)
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in structure["param_groups"]]
    return {"state": state, "param_groups": groups}


# ----------------------------------------------------------------------------- random generators


def capture_rng() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The torch (CPU and every CUDA device), numpy and ``random`` global states."""
    tensors = {"rng/torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = s
    name, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng/numpy_keys"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, internal, gauss = random.getstate()
    meta = {
        "numpy": {"name": name, "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "state": list(internal), "gauss": gauss},
    }
    return tensors, meta


def restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Put back the states captured by :func:`capture_rng`."""
    torch.set_rng_state(tensors["rng/torch_cpu"])
    cuda = sorted((int(k.rsplit("/", 1)[1]), v) for k, v in tensors.items() if k.startswith("rng/cuda/"))
    if cuda and torch.cuda.is_available():
        for i, s in cuda[: torch.cuda.device_count()]:
            torch.cuda.set_rng_state(s, i)
    n = meta["numpy"]
    keys = tensors["rng/numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state((n["name"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = meta["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


# ----------------------------------------------------------------------------- the file


@dataclass
class ResumeState:
    """What :func:`load_resume_state` returns."""

    weights: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    progress: Progress
    rng_tensors: dict[str, torch.Tensor]
    rng_meta: dict[str, Any]
    run: dict[str, Any]


def save_resume_state(
    path: str | Path,
    weights: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    progress: Progress,
    run: dict[str, Any],
    rng: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None,
) -> None:
    """Write the whole resumable state to ``path`` atomically (see the module doc).

    ``rng``: generator states from :func:`capture_rng` taken earlier (default: the current ones).
    """
    from safetensors.torch import save

    opt_tensors, opt_meta = optimizer_to_tensors(optimizer.state_dict())
    rng_tensors, rng_meta = rng if rng is not None else capture_rng()
    tensors = {f"model/{k}": v for k, v in weights.items()}
    tensors.update(opt_tensors)
    tensors.update(rng_tensors)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "progress": asdict(progress),
        "optimizer": opt_meta,
        "rng": rng_meta,
        "run": run,
    }
    data = save(tensors, metadata={"semcorr_state": json.dumps(doc)})
    atomic_write_bytes(path, data)


def load_resume_state(path: str | Path) -> ResumeState:
    """Read a file written by :func:`save_resume_state`."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types
        raise DataError(f"training state '{path}' is unreadable ({exc})") from None
    try:
        doc = json.loads(meta["semcorr_state"])
    except (KeyError, json.JSONDecodeError):
        raise DataError(f"'{path}' is not a semcorr training state") from None
    if doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise DataError(f"'{path}' is a training state of an unsupported format ({doc.get('format')} v{doc.get('version')})")
    weights = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    return ResumeState(
        weights=weights,
        optimizer=optimizer_from_tensors(tensors, doc["optimizer"]),
        progress=Progress(**doc["progress"]),
        rng_tensors={k: v for k, v in tensors.items() if k.startswith("rng/")},
        rng_meta=doc["rng"],
        run=doc["run"],
    )
