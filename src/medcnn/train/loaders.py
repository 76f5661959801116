"""DataLoaders over in-memory arrays that fetch a whole batch with one indexing operation.

The training order is a function of (seed, epoch) alone: a resumed run sees the batches an
uninterrupted one would, and W data-parallel processes each take one slice of the same global batch.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class ArrayDataset(Dataset):
    """(images, labels) held in memory; ``__getitems__`` returns a ready batch."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.labels = torch.from_numpy(np.ascontiguousarray(labels))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], self.labels[i]

    def __getitems__(self, idx: list[int]):
        t = torch.as_tensor(idx)
        return self.images[t], self.labels[t]


class EpochBatches(Sampler):
    """Batches of indices: one seeded permutation per epoch, cut into global batches of
    ``batch_size``; process ``rank`` of ``world`` yields its contiguous slice of each."""

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int = 0, drop_last: bool = False,
                 rank: int = 0, world: int = 1):
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.rank, self.world, self.epoch = rank, world, 0
        # drop a last global batch that leaves a process fewer than 2 samples: BatchNorm cannot train on it
        short = n % batch_size
        self.drop_last = drop_last or (shuffle and 0 < short < 2 * world)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def __iter__(self):
        if self.shuffle:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch))
        else:
            order = torch.arange(self.n)
        for b in range(len(self)):
            batch = order[b * self.batch_size:(b + 1) * self.batch_size]
            share = -(-len(batch) // self.world)
            yield batch[self.rank * share:(self.rank + 1) * share].tolist()


def _identity(batch):
    return batch


def array_loader(images: np.ndarray, labels: np.ndarray, batch_size: int, shuffle: bool,
                 drop_last: bool = False, seed: int = 0, rank: int = 0, world: int = 1) -> DataLoader:
    """``batch_size`` is the global batch; with ``world`` > 1 this process gets its slice of each."""
    ds = ArrayDataset(images, labels)
    sampler = EpochBatches(len(ds), batch_size, shuffle, seed, drop_last, rank, world)
    return DataLoader(ds, batch_sampler=sampler, num_workers=0, collate_fn=_identity)
