"""Safe reading and writing of weight files.

Nothing here unpickles arbitrary objects: ``.safetensors`` files are read with
safetensors, everything else with ``torch.load(weights_only=True)``; files
holding NaN or Inf are refused. Project checkpoints are a ``.safetensors``
file plus a JSON sidecar (``.json`` with the same stem) describing what the
weights are.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from .errors import WeightsError
from .files import atomic_write_bytes, atomic_write_text  # noqa: F401 - atomic_write_text is re-exported


#: Folder of the weights shipped inside the package.
SHIPPED_DIR = Path(__file__).resolve().parent / "weights"

#: sha256 of every shipped weights file, pinned in code so that a file and its
#: sidecar cannot be swapped together unnoticed. Each file is also one
#: :class:`semcorr.models.pretrained.ShippedWeights` entry (model, backbone, layers,
#: recipe and metrics, ``verify()``), which reads its pin here.
SHIPPED_SHA256: dict[str, str] = {
    # SFNet on MobileNetV2: examples/train_default_weights.sh sfnet (see the JSON sidecar)
    "sfnet_mobilenet_v2.safetensors": "876f75acb6955ddfa59e250a5fa4580e6e95364103154180fcadcf28471ddc8b",
    # NC-Net on MobileNetV2 (hypercolumn features, 3x3x3x3 consensus): examples/train_default_weights.sh ncnet
    "ncnet_mobilenet_v2.safetensors": "410ea45e71310ad89d5c5b0deed1c93443b713d4f3322215af2eea59d30a1f3d",
    # DCCNet on MobileNetV2 (from the NC-Net weights' consensus): examples/train_default_weights.sh dccnet
    "dccnet_mobilenet_v2.safetensors": "480f57bdf91cd4b248794cd19f90417a1eb1efe9d035a8247c547435c0d30d5b",
    # MMNet on MobileNetV2 (frozen backbone; synthetic, then NC-Net-teacher pseudo-keypoint pairs): examples/train_default_weights.sh mmnet
    "mmnet_mobilenet_v2.safetensors": "eb48d356670eea35f54b0c2bf47645337b7fe9c5614a61db9848602c828ca380",
}


def shipped_weights_path(model: str, backbone: str) -> Path:
    """Where ``weights="default"`` looks for ``model`` on ``backbone``: ``core/weights/<model>_<backbone>.safetensors``."""
    return SHIPPED_DIR / f"{model}_{backbone}.safetensors"


def weights_file_id(path: str | Path) -> str:
    """``"file:<name>:<sha256[:12]>"``: how a model records the weights file it was built from."""
    path = Path(path)
    return f"file:{path.name}:{sha256_file(path)[:12]}"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def verify_sha256(path: str | Path, expected: str) -> None:
    """Raise :class:`WeightsError` unless ``path`` hashes to ``expected``."""
    actual = sha256_file(path)
    if actual != expected:
        raise WeightsError(
            f"weights file '{path}' has sha256 {actual[:12]}…, expected {expected[:12]}…; it is corrupt or not the published file"
        )


def _unwrap_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"'{path}' does not hold a plain state_dict of tensors")
    return {k[7:] if k.startswith("module.") else k: v for k, v in obj.items()}


def refuse_non_finite_weights(obj: Any, source: str | Path, prefix: str = "") -> None:
    """:class:`WeightsError` when any tensor in ``obj`` (a tensor, or dicts/lists of them) holds NaN or Inf.

    Every weights file semcorr reads passes here (:func:`load_state_dict_file`,
    :func:`semcorr.models.official.read_official_checkpoint`), so a model with
    broken numbers is refused at load, whatever the architecture.
    """
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point() or obj.is_complex():
            bad = obj.numel() - int(torch.isfinite(obj).sum())
            if bad:
                raise WeightsError(
                    f"weights file '{source}': '{prefix or 'tensor'}' holds {bad} NaN or Inf value(s) of {obj.numel()}; "
                    "these weights are broken (a diverged training run?)"
                )
    elif isinstance(obj, dict):
        for k, v in obj.items():
            refuse_non_finite_weights(v, source, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            refuse_non_finite_weights(v, source, f"{prefix}[{i}]")


def load_state_dict_file(path: str | Path, raw: bool = False) -> Any:
    """Read a state_dict from ``.safetensors`` or a ``torch.save`` file, safely.

    ``raw=True`` returns the loaded object as is (for checkpoints holding
    several dicts); otherwise a flat ``{name: tensor}`` with any ``module.``
    prefix (DataParallel) removed.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file '{path}' does not exist")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:  # pragma: no cover - safetensors is a dependency
            raise WeightsError("reading .safetensors needs the 'safetensors' package") from None
        try:
            obj = load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types
            raise WeightsError(f"'{path}' is not a readable safetensors file ({exc})") from None
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise WeightsError(
                f"'{path}' could not be loaded as weights only ({str(exc).splitlines()[0][:200]}); "
                "semcorr never unpickles arbitrary objects"
            ) from None
    refuse_non_finite_weights(obj, path)
    return obj if raw else _unwrap_state_dict(obj, path)


def save_checkpoint(path: str | Path, state_dict: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write ``path`` (``.safetensors``) and its JSON sidecar atomically.

    The sidecar gets the weights' sha256 under ``"sha256"``.
    """
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    data = save(tensors, metadata={"format": "pt"})
    meta = dict(meta, sha256=hashlib.sha256(data).hexdigest())
    atomic_write_bytes(path, data)
    atomic_write_text(sidecar_path(path), json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")


def sidecar_path(path: str | Path) -> Path:
    """The JSON sidecar that describes ``path``."""
    return Path(path).with_suffix(".json")


def load_checkpoint(path: str | Path, verify: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a project checkpoint: ``(state_dict, meta)``; the JSON sidecar must be there, and its sha256 is checked."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file '{path}' does not exist")
    if verify and path.resolve().parent == SHIPPED_DIR:
        if path.name not in SHIPPED_SHA256:
            raise WeightsError(f"'{path.name}' is not one of the weights files shipped with semcorr")
        verify_sha256(path, SHIPPED_SHA256[path.name])
    if not sidecar_path(path).is_file():
        raise WeightsError(
            f"checkpoint '{path}' has no sidecar '{sidecar_path(path).name}' beside it (it names the model, its "
            "architecture and the weights' sha256); copy it along with the weights"
        )
    meta = read_sidecar(path)
    if verify and "sha256" in meta:
        verify_sha256(path, meta["sha256"])
    return load_state_dict_file(path), meta


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """The JSON sidecar of checkpoint ``path`` (``{}`` when it has none)."""
    side = sidecar_path(path)
    if not side.is_file():
        return {}
    try:
        meta = json.loads(side.read_text())
    except json.JSONDecodeError as exc:
        raise WeightsError(f"sidecar '{side}' is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise WeightsError(f"sidecar '{side}' does not hold a JSON object")
    return meta


