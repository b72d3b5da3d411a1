"""A tiny correspondence model for demos and tests of the training engine (``--model toy``).

Two strided convolutions, a 1×1 projection, cosine correlation and a
soft-argmax: small enough to train on a CPU in seconds at 32–64 px. Its
``train_data`` is chosen at build time (``train_data=weak|synthetic|keypoints``):

* ``synthetic`` / ``keypoints`` — mean distance between the soft-argmax
  transfer of the source keypoints and the true target keypoints (normalised);
* ``weak`` — NC-Net-style weak loss: mean best-match score of negatives (the
  batch rolled by one) minus that of the true pairs.

``nan_after=N`` makes the loss NaN from the N-th training call on, to exercise
the engine's divergence handling.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..backbones import DEFAULT_LAYERS
from ..correlation import correlation_4d, l2_normalize
from ..flow import soft_argmax_matches
from ..geometry import pixels_to_normalized
from ..models.base import CorrespondenceModel, Matches, load_project_checkpoint
from .validate import transfer_with_matches


class TinyBackbone(nn.Module):
    """Two 3×3 stride-2 convolutions: ``(B, 3, H, W)`` → ``{"conv1": (B, 8, H/2, W/2), "conv2": (B, 16, H/4, W/4)}``."""

    name = "tiny"
    weights_id = "random"

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
        f1 = F.relu(self.conv1(x))
        f2 = F.relu(self.conv2(f1))
        feats = {"conv1": f1, "conv2": f2}
        return {layer: feats[layer] for layer in layers}


class ToyModel(CorrespondenceModel):
    name: ClassVar[str] = "toy"
    train_data: ClassVar[str] = "synthetic"
    train_defaults: ClassVar[dict[str, Any]] = {
        "optimizer": "adam",
        "lr": 1e-3,
        "batch_size": 4,
        "iterations": 20,
        "lr_schedule": {"type": "step", "step_size": 10, "gamma": 0.5, "unit": "iteration"},
        "image_size": 48,
    }
    input_size = 48

    def __init__(self, backbone: nn.Module, train_data: str = "synthetic", dropout: float = 0.1, beta: float = 20.0, nan_after: int = 0):
        super().__init__()
        if train_data not in ("weak", "synthetic", "keypoints"):
            raise ValueError(f"train_data must be weak, synthetic or keypoints, not {train_data!r}")
        self.backbone = backbone
        self.train_data = train_data  # type: ignore[misc]  # per instance: the toy trains on any source
        self.layer = "conv2" if isinstance(backbone, TinyBackbone) else DEFAULT_LAYERS[backbone.name][0]
        channels = 16 if isinstance(backbone, TinyBackbone) else backbone.channels(self.layer)
        self.proj = nn.Conv2d(channels, 16, 1)
        self.dropout = nn.Dropout2d(dropout)
        self.beta, self.nan_after, self.dropout_p = beta, int(nan_after), dropout
        self.register_buffer("loss_calls", torch.zeros((), dtype=torch.int64))

    @property
    def required_layers(self) -> list[str]:
        return [self.layer]

    def features(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        return l2_normalize(self.dropout(self.proj(feats[self.layer])))

    def correlation(self, feats_src: dict[str, torch.Tensor], feats_trg: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(B, hA, wA, hB, wB)`` cosine scores."""
        return correlation_4d(self.features(feats_src), self.features(feats_trg))

    def head(self, feats_src: dict[str, torch.Tensor], feats_trg: dict[str, torch.Tensor]) -> Matches:
        corr = self.correlation(feats_src, feats_trg)
        s2t = soft_argmax_matches(corr, self.beta)
        t2s = soft_argmax_matches(corr.permute(0, 3, 4, 1, 2), self.beta)
        return Matches(s2t, t2s, corr=corr)

    def _count_call(self) -> bool:
        """Count training calls; True once the NaN fault is due."""
        if self.training:
            self.loss_calls += 1
        return self.nan_after > 0 and int(self.loss_calls) >= self.nan_after

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        poisoned = self._count_call()
        layers = self.required_layers
        fs, ft = self.backbone(batch["src_image"], layers), self.backbone(batch["trg_image"], layers)
        if self.train_data == "weak":
            pos = self.correlation(fs, ft)
            neg = self.correlation(fs, {k: v.roll(1, dims=0) for k, v in ft.items()})
            score = lambda c: c.flatten(3).max(dim=-1).values.mean()  # noqa: E731
            s_pos, s_neg = score(pos), score(neg)
            loss = s_neg - s_pos
            logs = {"score_pos": float(s_pos.detach()), "score_neg": float(s_neg.detach())}
        else:
            size = tuple(batch["src_image"].shape[-2:])
            pred = transfer_with_matches(self.head(fs, ft).src_to_trg, batch["src_kps"], size)
            true = pixels_to_normalized(batch["trg_kps"], size)
            dist = (pred - true).norm(dim=-1)
            valid = torch.isfinite(dist)
            loss = dist[valid].mean() if valid.any() else dist.new_zeros(()) * pred.nan_to_num().sum()
            logs = {"keypoints": float(valid.sum())}
        if poisoned:
            loss = loss * float("nan")
        return loss, logs

    def config(self) -> dict[str, Any]:
        return dict(
            super().config(), train_data=self.train_data, dropout=self.dropout_p, beta=self.beta, nan_after=self.nan_after
        )


def build_toy(
    backbone: str | None = None,
    backbone_weights: str | Path | None = None,
    weights: str | Path | None = None,
    train_data: str = "synthetic",
    dropout: float = 0.1,
    beta: float = 20.0,
    nan_after: int = 0,
) -> ToyModel:
    """The toy model; ``backbone`` ``"tiny"`` (default, trainable) or a :mod:`semcorr.backbones` name (frozen)."""
    if backbone in (None, "tiny"):
        bb: nn.Module = TinyBackbone()
    else:
        from ..backbones import build_backbone

        bb = build_backbone(backbone, backbone_weights or "default")
    model = ToyModel(bb, train_data=train_data, dropout=float(dropout), beta=float(beta), nan_after=int(nan_after))
    if weights is not None:
        load_project_checkpoint(model, weights)
    return model
