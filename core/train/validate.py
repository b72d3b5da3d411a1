"""Validation during training: mean loss, and PCK when the validation pairs have keypoints."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..geometry import normalized_to_pixels, pixels_to_normalized
from ..metrics import correct_keypoints, keypoint_errors
from ..models.base import CorrespondenceModel
from .distributed import all_reduce_sum


def transfer_with_matches(matches: torch.Tensor, points: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Move source pixel points with a match field.

    matches ``(B, h, w, 2)`` normalised target coordinates per source cell;
    points ``(B, N, 2)`` source pixels in an image of ``size = (H, W)`` →
    ``(B, N, 2)`` normalised target coordinates (NaN points stay NaN).
    """
    grid = pixels_to_normalized(torch.nan_to_num(points, nan=0.0), size).unsqueeze(1)
    out = F.grid_sample(matches.permute(0, 3, 1, 2), grid, mode="bilinear", padding_mode="border", align_corners=True)
    out = out[:, :, 0].permute(0, 2, 1)
    return torch.where(torch.isfinite(points), out, torch.full_like(out, float("nan")))


def pair_pck(pred: torch.Tensor, true: torch.Tensor, reference: torch.Tensor, alpha: float) -> list[float]:
    """PCK@alpha of each pair: pred/true ``(B, N, 2)`` pixels, reference ``(B,)`` lengths → B values (NaN: no keypoint)."""
    out = []
    for p, t, ref in zip(pred.double().cpu().numpy(), true.double().cpu().numpy(), reference.double().cpu().numpy()):
        correct, n = correct_keypoints(keypoint_errors(p, t), float(ref), [alpha])
        out.append(float(correct[0]) / n if n else float("nan"))
    return out


@torch.no_grad()
def validation_metrics(
    model: CorrespondenceModel, loader, device: torch.device, alpha: float = 0.1, with_pck: bool = True
) -> dict[str, float]:
    """Mean ``model.loss`` over the loader's batches and, when ``with_pck``, mean PCK@alpha over pairs.

    Sums are reduced over processes (each process evaluates its shard).
    The model is left in eval mode; the caller restores training mode.
    """
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64, device=device)  # loss·n, n, pck sum, pairs with pck
    for batch in loader:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        n = batch["src_image"].shape[0]
        loss, _ = model.loss(batch)
        totals[0] += float(loss) * n
        totals[1] += n
        if with_pck and "src_kps" in batch:
            size = tuple(batch["src_image"].shape[-2:])
            matches = model(batch["src_image"], batch["trg_image"]).src_to_trg
            pred = normalized_to_pixels(transfer_with_matches(matches, batch["src_kps"], size), size)
            ref = batch.get("trg_pck_ref", torch.full((n,), float(max(size)), device=device))
            values = np.array(pair_pck(pred, batch["trg_kps"], ref, alpha))
            ok = np.isfinite(values)
            totals[2] += float(values[ok].sum())
            totals[3] += int(ok.sum())
    all_reduce_sum(totals)
    out = {"loss": float(totals[0] / totals[1]) if totals[1] else float("nan"), "pairs": int(totals[1])}
    if with_pck and totals[3] > 0:
        out["pck"] = float(totals[2] / totals[3])
    return out
