"""DataLoaders over in-memory arrays that fetch a whole batch with one indexing operation."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


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


def _identity(batch):
    return batch


def array_loader(images: np.ndarray, labels: np.ndarray, batch_size: int, shuffle: bool,
                 drop_last: bool = False) -> DataLoader:
    ds = ArrayDataset(images, labels)
    # drop a last batch of one sample: BatchNorm cannot train on it
    drop = drop_last or (shuffle and len(ds) % batch_size == 1)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, drop_last=drop, num_workers=0,
                      collate_fn=_identity)
