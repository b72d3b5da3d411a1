"""Keypoint-annotated pairs (PF-PASCAL, SPair-71k readers of :mod:`semcorr.datasets`) at the training size."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from ..images import normalize_imagenet
from .loading import flip_box, flip_keypoints, load_resized, scale_box, scale_keypoints


def pair_keypoints(src: torch.Tensor, trg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Make a row NaN on both sides when either side is missing: ``(N, 2)``, ``(N, 2)``."""
    missing = ~(torch.isfinite(src).all(dim=1) & torch.isfinite(trg).all(dim=1))
    nan = torch.tensor(float("nan"))
    return torch.where(missing[:, None], nan, src), torch.where(missing[:, None], nan, trg)


def pck_reference(box: torch.Tensor, size: tuple[int, int], reference: str) -> torch.Tensor:
    """PCK length in pixels: the longer box side (``"bbox"``) or image side (``"image"``)."""
    if reference == "bbox" and torch.isfinite(box).all():
        return torch.maximum(box[2] - box[0], box[3] - box[1]).to(torch.float32)
    return torch.tensor(float(max(size)))


class AnnotatedPairs(Dataset):
    """Pairs of a keypoint benchmark, resized to ``size = (H, W)`` with their keypoints scaled.

    ``dataset`` is a :class:`semcorr.datasets.base.PairDataset` of
    :class:`~semcorr.datasets.base.KeypointPair`; ``indices`` selects its pairs.
    A pair whose ``meta["flip"]`` is true (PF-PASCAL training lists) is
    mirrored, both images together (NC-Net's convention), when ``flip`` is set.
    ``pck_reference``: ``"image"`` (PF-PASCAL) or ``"bbox"`` (SPair-71k).
    Items carry ``src_image``, ``trg_image``, ``src_kps``, ``trg_kps`` ``(N, 2)``,
    ``src_bbox``, ``trg_bbox`` ``(4,)`` (NaN when unknown) and ``trg_pck_ref``.
    """

    provides_keypoints = True
    kind = "keypoints"

    def __init__(self, dataset, indices: list[int], size: tuple[int, int], flip: bool = True, pck_reference: str = "image"):
        self.dataset, self.indices, self.size = dataset, list(indices), tuple(size)
        self.flip, self.reference = flip, pck_reference

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        _, index = key
        pair = self.dataset[self.indices[index]]
        src, src_orig = load_resized(pair.src_path, self.size)
        trg, trg_orig = load_resized(pair.trg_path, self.size)
        src_kps, trg_kps = pair_keypoints(
            scale_keypoints(pair.src_kps, src_orig, self.size), scale_keypoints(pair.trg_kps, trg_orig, self.size)
        )
        src_box, trg_box = scale_box(pair.src_bbox, src_orig, self.size), scale_box(pair.trg_bbox, trg_orig, self.size)
        if self.flip and pair.meta.get("flip"):
            w = self.size[1]
            src, trg = src.flip(-1), trg.flip(-1)
            src_kps, trg_kps = flip_keypoints(src_kps, w), flip_keypoints(trg_kps, w)
            src_box, trg_box = flip_box(src_box, w), flip_box(trg_box, w)
        return {
            "src_image": normalize_imagenet(src.unsqueeze(0))[0],
            "trg_image": normalize_imagenet(trg.unsqueeze(0))[0],
            "src_kps": src_kps,
            "trg_kps": trg_kps,
            "src_bbox": src_box,
            "trg_bbox": trg_box,
            "trg_pck_ref": pck_reference(trg_box, self.size, self.reference),
        }

    def describe(self) -> str:
        root = getattr(self.dataset, "root", "")
        split = getattr(self.dataset, "split", "")
        return f"{len(self)} keypoint-annotated {self.dataset.name} pairs ({split} split) from {root}"
