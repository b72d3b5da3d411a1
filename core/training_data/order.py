"""Which items make up each training step: a pure function of ``(seed, epoch, step)``.

Every epoch is a permutation of the items drawn from ``(seed, epoch)``; step
``s`` of the epoch takes the global batch ``perm[s·B·W : (s+1)·B·W]``, of which
rank ``r`` gets the ``r``-th slice of ``B`` items (``B`` = batch size per
process, ``W`` = number of processes). An incomplete last batch is dropped, so
every step has the same size on every rank. Resuming at ``(epoch, step)``
therefore reads exactly the items an uninterrupted run would.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

Key = tuple[int, int]


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of ``n`` items in ``epoch``: ``(n,)`` int64."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), 0x5EED]).permutation(n)


def seeded_subset(n: int, limit: int | None, seed: int) -> list[int]:
    """``limit`` of ``n`` item indices chosen from ``seed`` (sorted); all of them when ``limit`` is None."""
    if limit is None or limit >= n:
        return list(range(n))
    chosen = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x11A7]).permutation(n)[:limit]
    return sorted(int(i) for i in chosen)


class StepOrder:
    """The training order of ``n_items`` for ``world_size`` processes of ``batch_size`` items each."""

    def __init__(self, n_items: int, batch_size: int, world_size: int, seed: int):
        self.n_items, self.batch_size, self.world_size, self.seed = n_items, batch_size, world_size, seed

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    @property
    def steps_per_epoch(self) -> int:
        return self.n_items // self.global_batch

    def batch_keys(self, epoch: int, step_in_epoch: int, rank: int, perm: np.ndarray | None = None) -> list[Key]:
        """Keys ``(epoch, index)`` of rank ``rank``'s batch at ``step_in_epoch``."""
        if perm is None:
            perm = epoch_permutation(self.n_items, self.seed, epoch)
        start = step_in_epoch * self.global_batch + rank * self.batch_size
        return [(epoch, int(i)) for i in perm[start : start + self.batch_size]]


class RankBatchSampler(Sampler[list[Key]]):
    """Batches of one rank for one epoch, from step ``start`` to the end of the epoch."""

    def __init__(self, order: StepOrder, epoch: int, rank: int, start: int = 0):
        self.order, self.epoch, self.rank, self.start = order, epoch, rank, start

    def __len__(self) -> int:
        return max(0, self.order.steps_per_epoch - self.start)

    def __iter__(self) -> Iterator[list[Key]]:
        perm = epoch_permutation(self.order.n_items, self.order.seed, self.epoch)
        for s in range(self.start, self.order.steps_per_epoch):
            yield self.order.batch_keys(self.epoch, s, self.rank, perm)


class EvalBatchSampler(Sampler[list[Key]]):
    """Every item once, in order, sharded by rank (``index % world == rank``), last batch kept."""

    def __init__(self, n_items: int, batch_size: int, rank: int = 0, world_size: int = 1):
        self.indices = list(range(rank, n_items, world_size))
        self.batch_size = batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.batch_size)

    def __iter__(self) -> Iterator[list[Key]]:
        for i in range(0, len(self.indices), self.batch_size):
            yield [(0, j) for j in self.indices[i : i + self.batch_size]]


def collate_pairs(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack items into a batch; keypoint arrays ``(N_i, 2)`` are NaN-padded to the largest ``N``."""
    out: dict[str, torch.Tensor] = {}
    for key in items[0]:
        values = [it[key] for it in items]
        if key.endswith("_kps") and len({v.shape[0] for v in values}) > 1:
            n = max(v.shape[0] for v in values)
            values = [torch.cat([v, v.new_full((n - v.shape[0], 2), float("nan"))]) for v in values]
        out[key] = torch.stack(values)
    return out
