"""Weakly supervised pairs: two different images of the same class from a class-per-folder tree."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from ..images import normalize_imagenet
from .augment import item_rng
from .folder import ClassTree
from .loading import load_resized


class SameClassPairs(Dataset):
    """Pairs of different images of one class.

    Every image of a class holding at least two images is a source once per
    epoch; its partner is another image of the same class drawn from
    ``(seed, epoch, index)``, so ``dataset[(epoch, index)]`` is a pure function.
    Negatives for the weak loss are made by the loss (rolling the batch).
    ``subset`` restricts the source images (indices into ``tree.images``).
    """

    provides_keypoints = False
    kind = "weak"

    def __init__(self, tree: ClassTree, size: tuple[int, int], seed: int, subset: list[int] | None = None):
        self.tree, self.size, self.seed = tree, tuple(size), int(seed)
        groups = tree.by_class()
        self.members = groups
        allowed = set(subset) if subset is not None else None
        self.sources = [
            i
            for i, (_, c) in enumerate(tree.images)
            if len(groups[c]) >= 2 and (allowed is None or i in allowed)
        ]

    def __len__(self) -> int:
        return len(self.sources)

    def partner(self, epoch: int, index: int) -> int:
        """Image index paired with source ``index`` (of this dataset) in ``epoch``."""
        a = self.sources[index]
        others = [j for j in self.members[self.tree.images[a][1]] if j != a]
        return others[int(item_rng(self.seed, epoch, index, stream=1).integers(len(others)))]

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = key
        a, b = self.sources[index], self.partner(epoch, index)
        src, _ = load_resized(self.tree.images[a][0], self.size)
        trg, _ = load_resized(self.tree.images[b][0], self.size)
        return {
            "src_image": normalize_imagenet(src.unsqueeze(0))[0],
            "trg_image": normalize_imagenet(trg.unsqueeze(0))[0],
            "category": torch.tensor(self.tree.images[a][1], dtype=torch.int64),
        }

    def describe(self) -> str:
        n_classes = len({self.tree.images[i][1] for i in self.sources})
        return f"same-class image pairs from {len(self)} images in {n_classes} classes of {self.tree.root}"
