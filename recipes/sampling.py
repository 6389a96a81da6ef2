"""Training order that is the same for any number of processes.

Each epoch draws one permutation from (seed, epoch); global batch k is the slice
[k * B * world, (k + 1) * B * world) of it, and rank r takes the r-th part of that slice. A run on
W devices with per-device batch B therefore sees exactly the batches of a one-device run with
batch B * W, and a resumed run sees the batches an uninterrupted one would have: after a
mid-epoch checkpoint (SLURM preemption) `resume_at` skips the global batches already trained,
which Lightning alone would replay from the epoch's start."""
from __future__ import annotations

import torch
import torch.distributed as dist


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class GlobalBatchSampler(torch.utils.data.Sampler):
    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, 0
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_at(self, epoch: int, done: int) -> None:
        """The next pass over `epoch` starts after its first `done` global batches (once)."""
        self._resume = (epoch, done)

    def _global(self) -> int:
        return self.batch_size * _world()[1]

    def __len__(self) -> int:
        rank, world = _world()
        # Full global batches only; a data set smaller than one global batch is used once, whole.
        return (self.n // self._global()) * self.batch_size if self.n >= self._global() else self.n // world

    def __iter__(self):
        rank, world = _world()
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        per_rank = self.batch_size if self.n >= self._global() else self.n // world
        n_batches = max(1, self.n // self._global())
        first = 0
        if self._resume is not None and self._resume[0] == self.epoch:
            first, self._resume = self._resume[1], None
        for k in range(first, n_batches):
            start = k * per_rank * world + rank * per_rank
            yield from perm[start:start + per_rank]
