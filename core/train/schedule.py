"""Learning-rate schedules as pure functions of the position in training.

A schedule is a dict (models' ``train_defaults["lr_schedule"]``)::

    {"type": "step", "milestones": [30, 40], "gamma": 0.2, "unit": "epoch"}
    {"type": "step", "step_size": 10000, "gamma": 0.1, "unit": "iteration"}
    {"type": "cosine", "min_factor": 0.0}        # over the whole run
    None                                          # constant

Being a function of ``(step, epoch)`` only, the schedule needs no state of its
own to resume.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import UsageError, param

SCHEDULE_TYPES = ("step", "cosine", "none")
UNITS = ("epoch", "iteration")


def check_schedule(schedule: dict[str, Any] | None) -> dict[str, Any] | None:
    """Validate a schedule dict; returns a normalised copy (``None`` for constant)."""
    if schedule is None or schedule.get("type") in (None, "none", "constant"):
        return None
    s = dict(schedule)
    kind = s.get("type")
    if kind not in SCHEDULE_TYPES:
        raise UsageError(f"learning-rate schedule must be one of {', '.join(SCHEDULE_TYPES)}, not '{kind}'")
    if kind == "step":
        s.setdefault("gamma", 0.1)
        s.setdefault("unit", "epoch")
        if s["unit"] not in UNITS:
            raise UsageError(f"schedule unit must be epoch or iteration, not '{s['unit']}'")
        has_m, has_s = bool(s.get("milestones")), s.get("step_size") is not None
        if has_m == has_s:
            raise UsageError(f"a step schedule needs either milestones ({param('lr_milestones')}) or a step size ({param('lr_step_size')})")
        if has_m:
            s["milestones"] = sorted(int(m) for m in s["milestones"])
            s.pop("step_size", None)
        else:
            s["step_size"] = int(s["step_size"])
            s.pop("milestones", None)
            if s["step_size"] < 1:
                raise UsageError(f"{param('lr_step_size')} must be at least 1")
        if not float(s["gamma"]) > 0:
            raise UsageError(f"{param('lr_gamma')} must be positive")
    else:
        s.setdefault("min_factor", 0.0)
    return s


def lr_factor(schedule: dict[str, Any] | None, step: int, epoch: int, total_steps: int) -> float:
    """Multiplier of the base learning rate for the update made at ``step`` (0-based) in ``epoch``."""
    if schedule is None:
        return 1.0
    if schedule["type"] == "cosine":
        t = min(step / max(total_steps, 1), 1.0)
        lo = float(schedule.get("min_factor", 0.0))
        return lo + (1.0 - lo) * 0.5 * (1.0 + math.cos(math.pi * t))
    position = epoch if schedule.get("unit", "epoch") == "epoch" else step
    gamma = float(schedule["gamma"])
    if "milestones" in schedule:
        return gamma ** sum(position >= m for m in schedule["milestones"])
    return gamma ** (position // int(schedule["step_size"]))
