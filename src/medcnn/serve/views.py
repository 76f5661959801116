"""What the web page draws, as raw little-endian arrays in display order (slices, rows, columns,
channels); window/level, slice choice and overlays are done by the page.

2D images keep their (rows, columns); a volume is shown as slices along its last axis with the first
axis across and the second axis upwards, as the PNG overlays show it (RAS: right-left across,
anterior up). Volumes too large to send whole are sent with every k-th slice.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from medcnn.infer.seg_outputs import COLOURS
from medcnn.utils.files import atomic_path

MAX_VOXELS = 2**23
"""A view holds at most this many voxels per channel; larger volumes are thinned along the slices."""


def display_order(a: np.ndarray, spatial_dims: int) -> np.ndarray:
    """(C, *spatial) -> (slices, rows, columns, C)."""
    if spatial_dims == 2:
        return np.moveaxis(a, 0, -1)[None]
    return np.transpose(a, (3, 2, 1, 0))[:, ::-1]


def slice_step(spatial_shape: tuple[int, ...]) -> int:
    return max(1, math.ceil(math.prod(spatial_shape) / MAX_VOXELS))


def _window(a: np.ndarray, meta: dict) -> list[float]:
    c, w = meta.get("window_center"), meta.get("window_width")
    if c is not None and w is not None and w > 0:
        return [c - w / 2, c + w / 2]
    if a.dtype == np.uint8:
        return [0.0, 255.0]
    lo, hi = np.percentile(a, [1, 99])
    return [float(lo), float(hi) if hi > lo else float(lo) + 1.0]


def write_view(a: np.ndarray, spatial_dims: int, path: Path, dtype: str, step: int = 1) -> dict:
    """Write ``a`` (C, *spatial) in display order as raw ``dtype``; its description for the page."""
    v = display_order(a, spatial_dims)[::step]
    v = np.ascontiguousarray(v.astype("<" + np.dtype(dtype).str[1:], copy=False))
    with atomic_path(path) as tmp:
        v.tofile(tmp)
    return {"name": path.name, "shape": list(v.shape), "dtype": dtype, "slice_step": step}


def image_view(image, path: Path, step: int) -> dict:
    """The input (first channel, or RGB) as float32, with a default window (DICOM's, else 1-99 %)."""
    a = image.array if image.channels == 3 else image.array[:1]
    view = write_view(a.astype(np.float32, copy=False), image.spatial_dims, path, "float32", step)
    view["window"] = _window(image.array, image.meta)
    view["range"] = [float(a.min()), float(a.max())]
    return view


def mask_view(label, path: Path, step: int, names: list[str]) -> dict:
    view = write_view(label.array[:1].astype(np.uint8), label.spatial_dims, path, "uint8", step)
    view["labels"] = [{"value": i, "name": n, "colour": [int(round(c * 255)) for c in COLOURS[i % len(COLOURS)]]}
                      for i, n in enumerate(names) if i > 0]
    return view


def heat_view(heat: np.ndarray, path: Path) -> dict:
    """A saliency map in [0, 1] on the network's input grid, as uint8 (0-255)."""
    a = np.clip(np.rint(heat * 255), 0, 255).astype(np.uint8)[None]
    return write_view(a, heat.ndim, path, "uint8")
