"""Random training patches from in-memory cases, with foreground oversampling (as nnU-Net).

A fraction ``fg_oversample`` of the patches is centred on a voxel of a randomly chosen foreground
label present in the case (so rare, small structures are seen); the rest lie anywhere. Cases
smaller than the patch are zero-padded (label 0 = background, field of view 0 = outside).
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from medcnn.data.seg_prepare import PreparedCase


def crop(t: torch.Tensor, start, patch: list[int]) -> torch.Tensor:
    """(C, *S) -> (C, *patch) at ``start`` (may be negative / overhang: zero padding)."""
    out = torch.zeros((t.shape[0], *patch), dtype=t.dtype)
    src, dst = [slice(None)], [slice(None)]
    for d in range(len(patch)):
        lo, hi = int(start[d]), int(start[d]) + patch[d]
        s0, s1 = max(lo, 0), min(hi, t.shape[1 + d])
        src.append(slice(s0, s1))
        dst.append(slice(s0 - lo, s1 - lo))
    out[tuple(dst)] = t[tuple(src)]
    return out


class PatchBatches(IterableDataset):
    def __init__(self, cases: list[PreparedCase], patch: list[int], batch_size: int, n_batches: int,
                 fg_oversample: float = 0.33, seed: int = 0, rank: int = 0, world: int = 1):
        self.cases, self.patch, self.batch_size = cases, list(patch), batch_size
        self.rank, self.world = rank, world  # data-parallel: this process crops its slice of each global batch
        self.n_batches, self.fg, self.seed, self.epoch = n_batches, fg_oversample, seed, 0
        self.fg_coords = []  # per case: {label: (N, dims) int32 voxel indices}
        for c in cases:
            y = c.label[0].numpy()
            self.fg_coords.append({int(v): np.argwhere(y == v).astype(np.int32) for v in np.unique(y) if v > 0})

    def __len__(self) -> int:
        return self.n_batches

    def set_epoch(self, epoch: int) -> None:
        """Patches of ``epoch`` are drawn from their own seeded stream, so a resumed run sees the same
        patches as an uninterrupted one (the task sets it at every epoch start)."""
        self.epoch = int(epoch)

    def _crop(self, t: torch.Tensor, start: np.ndarray) -> torch.Tensor:
        return crop(t, start, self.patch)

    def _start(self, rng: np.random.Generator, i: int, shape: tuple[int, ...], forced: bool) -> np.ndarray:
        patch = np.asarray(self.patch)
        shape = np.asarray(shape)
        coords = self.fg_coords[i]
        if forced and coords:
            label = rng.choice(sorted(coords))
            centre = coords[label][rng.integers(len(coords[label]))]
            start = centre - patch // 2
            # keep the patch inside the case where the case is larger than the patch
            return np.where(shape >= patch, np.clip(start, 0, np.maximum(shape - patch, 0)), start)
        hi = np.maximum(shape - patch, 0)
        start = np.array([rng.integers(0, h + 1) for h in hi])
        return np.where(shape >= patch, start, -(patch - shape) // 2)  # centre a case smaller than the patch

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1  # the next pass, unless set_epoch says otherwise
        share = self.batch_size // self.world
        mine = range(self.rank * share, (self.rank + 1) * share)
        for _ in range(self.n_batches):
            xs, ys, fs = [], [], []
            for b in range(self.batch_size):  # every process draws the whole global batch (cheap) ...
                i = int(rng.integers(len(self.cases)))
                c = self.cases[i]
                forced = b >= self.batch_size * (1 - self.fg) - 1e-9 if self.fg > 0 else False
                start = self._start(rng, i, tuple(c.image.shape[1:]), forced)
                if b not in mine:  # ... and crops only its own slice
                    continue
                xs.append(self._crop(c.image, start))
                ys.append(self._crop(c.label, start))
                if c.fov is not None:
                    fs.append(self._crop(c.fov, start))
            yield torch.stack(xs), torch.stack(ys), (torch.stack(fs) if fs else torch.empty(0))


def patch_loader(cases: list[PreparedCase], patch: list[int], batch_size: int, n_batches: int,
                 fg_oversample: float, seed: int, rank: int = 0, world: int = 1) -> DataLoader:
    return DataLoader(PatchBatches(cases, patch, batch_size, n_batches, fg_oversample, seed, rank, world),
                      batch_size=None, num_workers=0)
