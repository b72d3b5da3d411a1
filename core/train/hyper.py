"""Training hyper-parameters: a model's ``train_defaults`` overridden by the command line."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..errors import UsageError, param
from .schedule import check_schedule

OPTIMIZERS = ("adam", "sgd")

#: Used when neither the model's ``train_defaults`` nor the command line says.
FALLBACK = {
    "optimizer": "adam",
    "lr": 1e-4,
    "batch_size": 16,
    "momentum": 0.9,
    "weight_decay": 0.0,
    "betas": (0.9, 0.999),
    "image_size": 240,
}


@dataclass(frozen=True)
class Hyper:
    """Resolved hyper-parameters of a run (``epochs`` xor ``iterations`` is set)."""

    optimizer: str
    lr: float
    batch_size: int
    epochs: int | None
    iterations: int | None
    lr_schedule: dict[str, Any] | None
    momentum: float
    weight_decay: float
    betas: tuple[float, float]
    image_size: tuple[int, int]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = list(self.betas)
        d["image_size"] = list(self.image_size)
        return d


def _schedule(defaults: dict[str, Any], o: dict[str, Any]) -> dict[str, Any] | None:
    base = defaults.get("lr_schedule")
    sched = dict(base) if base else {}
    kind = o.get("lr_schedule")
    if kind is not None:
        if kind in ("none", "constant"):
            return None
        if kind != sched.get("type"):
            sched = {"type": kind}
    if o.get("lr_milestones") is not None:
        sched.update(type=sched.get("type", "step"), milestones=list(o["lr_milestones"]))
        sched.pop("step_size", None)
    if o.get("lr_step_size") is not None:
        sched.update(type=sched.get("type", "step"), step_size=o["lr_step_size"])
        sched.pop("milestones", None)
    for key, opt in (("gamma", "lr_gamma"), ("unit", "lr_unit")):
        if o.get(opt) is not None:
            if not sched:
                raise UsageError(f"{param(opt)} needs a schedule ({param('lr_schedule')} step with milestones or a step size)")
            sched[key] = o[opt]
    return check_schedule(sched or None)


def resolve_hyper(defaults: dict[str, Any], overrides: dict[str, Any]) -> Hyper:
    """Merge ``defaults`` (a model's ``train_defaults``) with non-None ``overrides`` (command line).

    ``overrides`` keys: ``optimizer``, ``lr``, ``batch_size``, ``epochs``,
    ``iterations``, ``momentum``, ``weight_decay``, ``image_size`` and the
    schedule options ``lr_schedule``, ``lr_milestones``, ``lr_step_size``,
    ``lr_gamma``, ``lr_unit``.
    """
    o = {k: v for k, v in overrides.items() if v is not None}
    if "epochs" in o and "iterations" in o:
        raise UsageError(f"give {param('epochs')} or {param('iterations')}, not both")

    def pick(key: str) -> Any:
        return o.get(key, defaults.get(key, FALLBACK.get(key)))

    if "epochs" in o or "iterations" in o:
        epochs, iterations = o.get("epochs"), o.get("iterations")
    else:
        epochs, iterations = defaults.get("epochs"), defaults.get("iterations")
        if epochs is not None and iterations is not None:
            iterations = None
    if epochs is None and iterations is None:
        raise UsageError(f"the model has no default training length; give {param('epochs')} or {param('iterations')}")
    if (epochs is not None and epochs < 1) or (iterations is not None and iterations < 1):
        raise UsageError(f"{param('epochs')} and {param('iterations')} must be at least 1")
    optimizer = str(pick("optimizer")).lower()
    if optimizer not in OPTIMIZERS:
        raise UsageError(f"{param('optimizer')} must be one of {', '.join(OPTIMIZERS)}, not '{optimizer}'")
    lr, batch = float(pick("lr")), int(pick("batch_size"))
    if not lr > 0:
        raise UsageError(f"{param('lr')} must be positive")
    if batch < 1:
        raise UsageError(f"{param('batch_size')} must be at least 1")
    betas = tuple(float(b) for b in pick("betas"))
    if len(betas) != 2:
        raise UsageError(f"betas must be two numbers, got {betas}")
    return Hyper(
        optimizer=optimizer,
        lr=lr,
        batch_size=batch,
        epochs=int(epochs) if epochs is not None else None,
        iterations=int(iterations) if iterations is not None else None,
        lr_schedule=_schedule(defaults, o),
        momentum=float(pick("momentum")),
        weight_decay=float(pick("weight_decay")),
        betas=(betas[0], betas[1]),
        image_size=_parse_size(pick("image_size")),
    )


def _parse_size(value: Any) -> tuple[int, int]:
    """:func:`semcorr.images.parse_size`, imported on use: the CLI reads this module's names at start-up, before numpy."""
    from ..images import parse_size

    return parse_size(value)
