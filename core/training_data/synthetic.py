"""Synthetic training pairs: two random affine warps of one image, with exact correspondence.

For an image ``I`` (and its foreground mask), two maps ``theta_src`` and
``theta_trg`` (2×3, normalised coordinates, :func:`semcorr.training_data.augment.random_affine`)
give the views ``src(p) = I(theta_src p)`` and ``trg(q) = I(theta_trg q)``. Source
pixel ``p`` and target pixel ``q`` show the same point of ``I`` exactly when
``theta_trg q = theta_src p``, i.e. ``q = A_trg⁻¹ (theta_src p − t_trg)``: the
dense ground truth is affine, computed in float64, and NaN where the point lies
outside ``I`` or outside the other view.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..geometry import cell_grid, normalized_to_pixels
from ..images import normalize_imagenet
from .augment import colour_jitter, draw_jitter, item_rng, random_affine
from .loading import load_resized
from .masks import MaskRef, describe_masks, mask_at_size


@dataclass(frozen=True)
class SyntheticConfig:
    """How synthetic pairs are drawn.

    ``sigma``: std of the noise added to the identity 2×3 map; ``jitter``:
    colour-jitter strength (0 = none); ``flip_prob``: probability of mirroring
    the image (both views) first; ``num_keypoints``: corresponding foreground
    points per pair (NaN-padded); ``max_condition`` / ``min_singular``: what a
    well-conditioned map is.
    """

    sigma: float = 0.15
    jitter: float = 0.1
    flip_prob: float = 0.5
    num_keypoints: int = 32
    max_condition: float = 3.0
    min_singular: float = 0.4


def affine_sampling_grid(theta: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """Where each output pixel of a ``theta`` view reads the image: ``(1, H, W, 2)`` normalised ``theta p``."""
    h, w = size
    p = cell_grid(h, w, dtype=torch.float64).numpy()
    return torch.from_numpy(p @ theta[:, :2].T + theta[:, 2]).to(torch.float32).unsqueeze(0)


def warp_affine(image: torch.Tensor, theta: np.ndarray) -> torch.Tensor:
    """View of ``image`` ``(C, H, W)`` through ``theta`` ``(2, 3)``: ``out(p) = image(theta p)``, zeros outside."""
    grid = affine_sampling_grid(theta, tuple(image.shape[-2:]))
    return F.grid_sample(image.unsqueeze(0), grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0]


def affine_correspondence(theta_from: np.ndarray, theta_to: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """Exact match of every pixel of the ``theta_from`` view in the ``theta_to`` view.

    Returns ``(H, W, 2)`` normalised ``(x, y)`` (align_corners=True) in the
    other view; NaN where the pixel shows no part of the image (outside
    ``[-1, 1]²`` of the original) or its match falls outside the other view.
    """
    h, w = size
    p = cell_grid(h, w, dtype=torch.float64).reshape(-1, 2).numpy()
    original = p @ theta_from[:, :2].T + theta_from[:, 2]
    inv = np.linalg.inv(theta_to[:, :2])
    q = (original - theta_to[:, 2]) @ inv.T
    eps = 1e-9
    valid = (np.abs(original) <= 1 + eps).all(axis=1) & (np.abs(q) <= 1 + eps).all(axis=1)
    q[~valid] = np.nan
    return torch.from_numpy(q.reshape(h, w, 2)).to(torch.float32)


def sample_corresponding_points(
    src_mask: torch.Tensor, flow_src_to_trg: torch.Tensor, n: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` source foreground pixels with a valid match, and their exact matches.

    src_mask ``(1, H, W)``; flow ``(H, W, 2)`` normalised → ``(src_kps, trg_kps)``
    each ``(n, 2)`` pixel ``(x, y)``; rows past the available points are NaN.
    """
    h, w = flow_src_to_trg.shape[:2]
    ok = (src_mask[0] > 0.5) & torch.isfinite(flow_src_to_trg).all(dim=-1)
    candidates = torch.nonzero(ok.reshape(-1)).squeeze(1).numpy()
    src = torch.full((n, 2), float("nan"))
    trg = torch.full((n, 2), float("nan"))
    k = min(n, len(candidates))
    if k:
        chosen = torch.from_numpy(rng.choice(candidates, size=k, replace=False))
        ys, xs = chosen // w, chosen % w
        src[:k, 0], src[:k, 1] = xs.float(), ys.float()
        trg[:k] = normalized_to_pixels(flow_src_to_trg[ys, xs], (h, w))
    return src, trg


def make_synthetic_pair(
    image: torch.Tensor, mask: torch.Tensor, rng: np.random.Generator, config: SyntheticConfig = SyntheticConfig()
) -> dict[str, torch.Tensor]:
    """One training pair from one image.

    image ``(3, H, W)`` in [0, 1]; mask ``(1, H, W)`` float {0, 1} → a dict of
    ``src_image``, ``trg_image`` ``(3, H, W)`` (ImageNet-normalised),
    ``src_mask``, ``trg_mask`` ``(1, H, W)``, ``flow_src_to_trg``,
    ``flow_trg_to_src`` ``(H, W, 2)`` (normalised, NaN outside) and
    ``src_kps``, ``trg_kps`` ``(N, 2)`` (pixels, NaN padding). Draws from
    ``rng`` in a fixed order: flip, the two maps, the two jitters, the points.
    """
    h, w = image.shape[-2:]
    if rng.random() < config.flip_prob:
        image, mask = image.flip(-1), mask.flip(-1)
    theta_src = random_affine(rng, config.sigma, config.max_condition, config.min_singular)
    theta_trg = random_affine(rng, config.sigma, config.max_condition, config.min_singular)
    jitter_src, jitter_trg = draw_jitter(rng, config.jitter), draw_jitter(rng, config.jitter)
    stacked = torch.cat([image, mask])  # image and mask warped by the same grid
    src_view, trg_view = warp_affine(stacked, theta_src), warp_affine(stacked, theta_trg)
    src, trg = colour_jitter(src_view[:3], jitter_src), colour_jitter(trg_view[:3], jitter_trg)
    src_mask, trg_mask = (src_view[3:] > 0.5).float(), (trg_view[3:] > 0.5).float()
    flow_st = affine_correspondence(theta_src, theta_trg, (h, w))
    flow_ts = affine_correspondence(theta_trg, theta_src, (h, w))
    src_kps, trg_kps = sample_corresponding_points(src_mask, flow_st, config.num_keypoints, rng)
    return {
        "src_image": normalize_imagenet(src.unsqueeze(0))[0],
        "trg_image": normalize_imagenet(trg.unsqueeze(0))[0],
        "src_mask": src_mask,
        "trg_mask": trg_mask,
        "flow_src_to_trg": flow_st,
        "flow_trg_to_src": flow_ts,
        "src_kps": src_kps,
        "trg_kps": trg_kps,
        "trg_pck_ref": torch.tensor(float(max(h, w))),
    }


class SyntheticPairs(Dataset):
    """Warped pairs of single images: ``dataset[(epoch, index)]`` is a pure function of ``(seed, epoch, index)``.

    ``images`` and ``masks`` are parallel lists (one :class:`MaskRef` per image);
    ``size = (H, W)`` is the training size.
    """

    provides_keypoints = True
    kind = "synthetic"

    def __init__(
        self,
        images: list[Path],
        masks: list[MaskRef],
        size: tuple[int, int],
        seed: int,
        config: SyntheticConfig = SyntheticConfig(),
        origin: str = "",
    ):
        if len(images) != len(masks):
            raise ValueError("images and masks must be parallel lists")
        self.images, self.masks = list(images), list(masks)
        self.size, self.seed, self.config, self.origin = tuple(size), int(seed), config, origin

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = key
        image, orig = load_resized(self.images[index], self.size)
        mask = mask_at_size(self.masks[index], orig, self.size)
        return make_synthetic_pair(image, mask, item_rng(self.seed, epoch, index), self.config)

    def describe(self) -> str:
        return (
            f"synthetic pairs (two random affine warps of one image) from {len(self)} images of {self.origin}; "
            f"foreground masks: {describe_masks(self.masks)}"
        )
