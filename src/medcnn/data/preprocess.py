"""Turn an :class:`Image` into network input, the same way in training and in predict.

Steps (recorded in the plan's ``preprocessing``): channels (RGB -> grey by luminance, grey ->
RGB by repetition), intensity to [0, 1] (the plan's ``normalization``: uint8 or percentile_clip,
see medcnn.transforms.normalize), resize to ``input_size`` (area/bilinear in 2D, trilinear in 3D).
Mean/std normalisation happens inside the network (see ``models.Normalize``), so exported
models carry it.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from medcnn.errors import InputError
from medcnn.io.image import Image
from medcnn.transforms.normalize import get_normalizer

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
CLASSIFY_NORMALIZATIONS = ("uint8", "percentile_clip")  # to [0, 1]; the network's input layer does mean/std


def image_to_array(img: Image, input_size: list[int], channels: int, normalization: str, path=None) -> np.ndarray:
    """(C, *input_size) array: uint8 for "uint8" normalization (kept compact in memory), else float32 in [0, 1]."""
    x = image_to_tensor(img, input_size, channels, normalization, path=path)
    if normalization == "uint8":
        return (x * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    return x.numpy()


def image_to_tensor(img: Image, input_size: list[int], channels: int, normalization: str, path=None) -> torch.Tensor:
    """(C, *input_size) float32 tensor in [0, 1]; ``normalization``: a classification normaliser's name."""
    path = path or img.meta.get("source")
    a = np.asarray(img.array)
    dims = len(input_size)
    a = _match_dims(a, dims, path)
    a = _match_channels(a, channels, path)
    if normalization not in CLASSIFY_NORMALIZATIONS:
        raise InputError(f"unknown normalization {normalization!r} ({' | '.join(CLASSIFY_NORMALIZATIONS)})")
    a = get_normalizer(normalization).forward(a, path)
    return resize_batch(torch.from_numpy(np.ascontiguousarray(a))[None], input_size)[0]


def resize_batch(x: torch.Tensor, input_size: list[int]) -> torch.Tensor:
    """(B, C, *spatial) float in [0, 1] (or uint8) -> (B, C, *input_size) float in [0, 1]."""
    x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
    if list(x.shape[2:]) == list(input_size):
        return x
    dims = len(input_size)
    mode = "bilinear" if dims == 2 else "trilinear"
    return F.interpolate(x, size=tuple(input_size), mode=mode, align_corners=False, antialias=(dims == 2)).clamp(0, 1)


def _match_dims(a: np.ndarray, dims: int, path) -> np.ndarray:
    """Squeeze singleton spatial axes (a 1-slice volume is a 2D image) to reach ``dims``."""
    while a.ndim - 1 > dims:
        singles = [ax for ax in range(1, a.ndim) if a.shape[ax] == 1]
        if not singles:
            shape = tuple(a.shape[1:])
            raise InputError(f"the model takes {dims}D images but this is {a.ndim - 1}D with shape {shape}"
                             + ("; pass a single slice" if dims == 2 else ""), path)
        a = np.squeeze(a, axis=singles[0])
    if a.ndim - 1 < dims:
        raise InputError(f"the model takes {dims}D volumes but this is a {a.ndim - 1}D image", path)
    return a


def _match_channels(a: np.ndarray, channels: int, path) -> np.ndarray:
    c = a.shape[0]
    if c == channels:
        return a
    if channels == 1 and c in (3, 4):
        w = _LUMA.reshape((3,) + (1,) * (a.ndim - 1))
        out = (a[:3].astype(np.float32) * w).sum(0, keepdims=True)
        return out.round().astype(np.uint8) if a.dtype == np.uint8 else out
    if channels == 3 and c == 1:
        return np.repeat(a, 3, axis=0)
    if channels == 3 and c == 4:
        return a[:3]
    raise InputError(f"image has {c} channels; the model takes {channels}", path)

