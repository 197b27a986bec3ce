"""Deterministic, resumable data order and per-sample augmentation seeds.

Exact resume mid-epoch needs two things:

* the order of samples in an epoch must be a pure function of ``(seed, epoch)``, so a resumed
  run can skip the batches it already consumed (:class:`ResumableSampler`, also the
  distributed sampler: each rank takes every ``world_size``-th index of the same permutation);
* the random augmentation of a sample must not depend on which worker process loads it or on
  what ran before (:class:`SeededDataset` seeds ``random``, ``numpy`` and ``torch`` from
  ``(seed, epoch, index)`` around each ``__getitem__``).
"""

from __future__ import annotations

from collections.abc import Iterator
import random
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed for one sample of one epoch."""
    # Large odd multipliers spread neighbouring (epoch, index) pairs over the seed space.
    return (seed * 1_000_003 + epoch * 7_919_993 + index * 104_729) % (2**32)


class ResumableSampler(Sampler[tuple[int, int]]):
    """Yields ``(epoch, index)`` keys in a per-epoch permutation, optionally sharded.

    Args:
        num_samples: dataset length.
        seed: base seed of the permutation.
        shuffle: permute (training) or keep the order (evaluation).
        rank: this process's rank (DDP), 0 otherwise.
        world_size: number of processes; every rank gets ``num_samples // world_size`` keys
            (the tail of the permutation is dropped so ranks stay in step).
    """

    def __init__(self, num_samples: int, seed: int = 0, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1) -> None:
        self.num_samples = num_samples
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch and skip its first ``start`` keys of this rank (resume)."""
        self.epoch = epoch
        self.start = start

    def per_rank(self) -> int:
        """Keys per rank per epoch."""
        return self.num_samples // self.world_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.num_samples, generator=g).tolist()
        else:
            order = list(range(self.num_samples))
        mine = order[self.rank: self.per_rank() * self.world_size: self.world_size]
        for idx in mine[self.start:]:
            yield self.epoch, idx

    def __len__(self) -> int:
        return max(self.per_rank() - self.start, 0)


class SeededDataset(Dataset):
    """Wraps a dataset so item ``(epoch, index)`` is loaded under a fixed RNG seed.

    The global RNG states of the calling process are saved and restored around the call, so
    loading data never perturbs the training RNG.
    """

    def __init__(self, dataset: Any, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        s = sample_seed(self.seed, epoch, index)
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            random.seed(s)
            np.random.seed(s)
            torch.manual_seed(s)
            try:
                return self.dataset[index]
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)
