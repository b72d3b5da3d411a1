"""CPU-sized training defaults: what a run on a CPU uses for the options its command line leaves out.

Each model's defaults are its paper's (``train_defaults`` and the builder's
architecture), sized for a GPU: NC-Net's batch of 16 at 400 px through
5×5×5×5 consensus layers needs ~10 GB and minutes per step on two cores. When
no GPU is in use, the options not given take the sizes of the recipes that
made the shipped weights (``examples/train_default_weights.sh``) instead:
image size, batch size, training length and, for the 4D-convolution models,
the consensus (and fusion) layers. An option given on the command line always
wins, so a run that gives them all computes exactly what it did before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Hyper-parameter names (``TrainOptions`` fields) → the command-line options that set them.
HYPER_OPTIONS = {"image_size": "--size", "batch_size": "--batch-size", "iterations": "--iterations"}

_CONSENSUS = {"ncons_kernel_sizes": [3, 3], "ncons_channels": [16, 1]}

#: Per model: hyper-parameters and builder options used on a CPU when not given.
CPU_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "sfnet": {"hyper": {"image_size": 320, "batch_size": 8, "iterations": 2100}, "model": {}},
    "ncnet": {"hyper": {"image_size": 320, "batch_size": 8, "iterations": 400}, "model": dict(_CONSENSUS)},
    "dccnet": {
        "hyper": {"image_size": 320, "batch_size": 4, "iterations": 400},
        "model": dict(_CONSENSUS, fusion_kernel_sizes=[3, 3], fusion_channels=[16, 1]),
    },
    "mmnet": {"hyper": {"image_size": 320, "batch_size": 5, "iterations": 1800}, "model": {"train_backbone": False}},
}


@dataclass
class CpuDefaults:
    """The CPU-sized values a run takes: ``hyper`` (``TrainOptions`` field → value) and ``model`` (builder options)."""

    hyper: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.hyper or self.model)

    def to_json(self) -> dict[str, Any]:
        return {"hyper": dict(self.hyper), "model_options": dict(self.model)}

    def as_options(self) -> str:
        """The same choice written as command-line options, e.g. ``--batch-size 8 --model-opt ncons_channels=16,1``."""
        parts = [f"{HYPER_OPTIONS[k]} {v}" for k, v in self.hyper.items()]
        parts += [f"--model-opt {k}={_option_text(v)}" for k, v in self.model.items()]
        return " ".join(parts)


def _option_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def cpu_defaults(
    model: str,
    given_hyper: dict[str, Any],
    given_model: dict[str, Any],
    fixed_model: set[str] | bool = False,
) -> CpuDefaults:
    """What a CPU run of ``model`` takes beyond what it was given.

    ``given_hyper``: ``TrainOptions`` fields as given (``None``: not given;
    ``epochs`` counts as giving the length); ``given_model``: the
    ``--model-opt`` options; ``fixed_model``: the builder options an
    ``--init-weights`` file fixes (left to it; ``True``: all of them). Models
    without an entry (e.g. ``toy``) get nothing.
    """
    table = CPU_DEFAULTS.get(model)
    if table is None:
        return CpuDefaults()
    hyper = {}
    for key, value in table["hyper"].items():
        if key == "iterations" and (given_hyper.get("epochs") is not None or given_hyper.get("iterations") is not None):
            continue
        if given_hyper.get(key) is None:
            hyper[key] = value
    if fixed_model is True:
        return CpuDefaults(hyper=hyper)
    fixed = set(given_model) | set(fixed_model or ())
    return CpuDefaults(hyper=hyper, model={k: v for k, v in table["model"].items() if k not in fixed})


def fixed_architecture(init_weights: str | Path | None) -> set[str] | bool:
    """The builder options an ``--init-weights`` file fixes: its sidecar's ``config`` keys; ``True`` for an authors' file."""
    if init_weights is None:
        return False
    path = Path(init_weights)
    if path.suffix != ".safetensors":
        return True  # an authors' checkpoint: its weights give the architecture
    from ..weights import read_sidecar

    return set(read_sidecar(path).get("config", {}))
