"""Intensity normalisation of whole images, the same in training and at predict time."""
from __future__ import annotations

import numpy as np


def normalize(array: np.ndarray, mode: str, *, ct_clip: list[float] | None = None,
              mean: list[float] | None = None, std: list[float] | None = None) -> np.ndarray:
    """(C, *spatial) -> float32.

    - ``zscore``: per image and channel, statistics over the nonzero voxels (skull-stripped or
      cropped MRI has a zero background) or over all voxels when there are none;
    - ``ct``: clip to ``ct_clip`` (HU), then the dataset's ``mean`` / ``std``;
    - ``rgb``: per image and channel over all pixels (photographs, fundus images);
    - ``none``: as float.
    """
    x = array.astype(np.float32, copy=True)
    if mode == "none":
        return x
    if mode == "ct":
        lo, hi = ct_clip or (-1024.0, 3071.0)
        np.clip(x, lo, hi, out=x)
        m = np.asarray(mean or [0.0], np.float32).reshape((-1,) + (1,) * (x.ndim - 1))
        s = np.asarray(std or [1.0], np.float32).reshape((-1,) + (1,) * (x.ndim - 1))
        return (x - m) / np.maximum(s, 1e-6)
    for c in range(x.shape[0]):
        ch = x[c]
        vals = ch[ch != 0] if mode == "zscore" and np.any(ch != 0) and np.mean(ch != 0) < 0.99 else ch
        m, s = float(vals.mean()), float(vals.std())
        x[c] = (ch - m) / max(s, 1e-6)
    return x
