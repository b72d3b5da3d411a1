"""Random augmentations drawn from an explicit ``numpy.random.Generator``.

Nothing here touches a global random state, so an item is a pure function of
the generator it is given (the sources seed one per ``(seed, epoch, index)``).
"""

from __future__ import annotations

import numpy as np
import torch
import torchvision.transforms.functional as TF

IDENTITY_AFFINE = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def is_well_conditioned(theta: np.ndarray, max_condition: float = 3.0, min_singular: float = 0.4) -> bool:
    """True when the 2×2 part of ``theta`` (2, 3) keeps orientation, and its
    singular values satisfy ``s_max / s_min <= max_condition`` and ``s_min >= min_singular``."""
    a = theta[:, :2]
    if np.linalg.det(a) <= 0:
        return False
    s = np.linalg.svd(a, compute_uv=False)
    return bool(s[-1] >= min_singular and s[0] / s[-1] <= max_condition)


def random_affine(
    rng: np.random.Generator,
    sigma: float = 0.15,
    max_condition: float = 3.0,
    min_singular: float = 0.4,
    max_tries: int = 100,
) -> np.ndarray:
    """``theta = I + N(0, sigma)`` on the six parameters of a 2×3 normalised-coordinate map.

    Redrawn until invertible and well-conditioned (:func:`is_well_conditioned`);
    after ``max_tries`` failures the identity. Returns float64 ``(2, 3)``;
    ``theta @ [x, y, 1]`` is the original-image point seen at output ``(x, y)``
    (``torch.nn.functional.affine_grid`` convention).
    """
    for _ in range(max_tries):
        theta = IDENTITY_AFFINE + rng.normal(0.0, sigma, size=(2, 3))
        if is_well_conditioned(theta, max_condition, min_singular):
            return theta
    return IDENTITY_AFFINE.copy()


def draw_jitter(rng: np.random.Generator, strength: float = 0.1) -> tuple[float, float, float, float]:
    """Brightness, contrast and saturation factors in ``1 ± strength`` and a hue shift in ``± strength``."""
    if strength <= 0:
        return (1.0, 1.0, 1.0, 0.0)
    b, c, s = rng.uniform(1.0 - strength, 1.0 + strength, size=3)
    h = rng.uniform(-min(strength, 0.5), min(strength, 0.5))
    return (float(b), float(c), float(s), float(h))


def colour_jitter(image: torch.Tensor, factors: tuple[float, float, float, float]) -> torch.Tensor:
    """Apply brightness, contrast, saturation then hue (fixed order) to ``(3, H, W)`` in [0, 1]."""
    b, c, s, h = factors
    if (b, c, s, h) == (1.0, 1.0, 1.0, 0.0):
        return image
    out = TF.adjust_brightness(image, b)
    out = TF.adjust_contrast(out, c)
    out = TF.adjust_saturation(out, s)
    if h != 0.0:
        out = TF.adjust_hue(out, h)
    return out.clamp(0.0, 1.0)


def item_rng(seed: int, epoch: int, index: int, stream: int = 0) -> np.random.Generator:
    """The generator of one item: a pure function of ``(seed, epoch, index, stream)``."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), int(index), int(stream)])
