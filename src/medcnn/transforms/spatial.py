"""Resampling between voxel grids that share orientation (only the spacing changes)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def resampled_shape(shape: tuple[int, ...], spacing: tuple[float, ...], target: list[float] | tuple[float, ...]) -> tuple[int, ...]:
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, target))


def resample(array: np.ndarray | torch.Tensor, shape: tuple[int, ...], *, label: bool = False) -> torch.Tensor:
    """(C, *spatial) -> (C, *shape): linear for images, nearest for label maps."""
    x = torch.as_tensor(np.asarray(array) if isinstance(array, np.ndarray) else array)
    if tuple(x.shape[1:]) == tuple(shape):
        return x
    dims = x.ndim - 1
    if label:
        return F.interpolate(x[None].float(), size=tuple(shape), mode="nearest-exact")[0].to(x.dtype)
    mode = "bilinear" if dims == 2 else "trilinear"
    return F.interpolate(x[None].float(), size=tuple(shape), mode=mode, align_corners=False)[0]


def resample_probabilities(probs: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """(C, *spatial) class probabilities back to an original grid (linear, then argmax by the caller)."""
    if tuple(probs.shape[1:]) == tuple(shape):
        return probs
    mode = "bilinear" if probs.ndim == 3 else "trilinear"
    return F.interpolate(probs[None].float(), size=tuple(shape), mode=mode, align_corners=False)[0]
