"""The training sampler of map-style datasets: a pure function of (seed, epoch), split by rank."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

__all__ = ["EpochSampler", "epoch_seed"]


def epoch_seed(seed: int, epoch: int) -> int:
    """One 32-bit seed per (run seed, epoch): two runs with other seeds draw other orders."""
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0])


class EpochSampler(torch.utils.data.Sampler):
    """Shuffle (or, with ``weights``, draw with replacement — class-balanced sampling) the
    ``n`` items once per epoch, then give rank ``r`` of ``W`` every ``W``-th index from ``r``.

    Every rank draws the same stream (seeded by :func:`epoch_seed`), padded by
    wrapping to a multiple of ``W``, so ranks see disjoint parts of one epoch and run
    the same number of steps. Call :meth:`set_epoch` before each epoch.
    """

    def __init__(self, n: int, weights: Optional[np.ndarray] = None, seed: int = 0, rank: int = 0,
                 world_size: int = 1):
        self.n, self.seed, self.rank, self.world = int(n), int(seed), int(rank), int(world_size)
        self.weights = None if weights is None else torch.as_tensor(np.asarray(weights, np.float64))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def order(self) -> list:
        g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        if self.weights is None:
            full = torch.randperm(self.n, generator=g)
        else:
            full = torch.multinomial(self.weights, self.n, replacement=True, generator=g)
        per = math.ceil(self.n / self.world)
        full = torch.cat([full, full[: per * self.world - self.n]]) if per * self.world > self.n else full
        return full[self.rank::self.world].tolist()

    def __iter__(self):
        return iter(self.order())

    def __len__(self) -> int:
        return math.ceil(self.n / self.world)
