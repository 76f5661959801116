"""One image from one file per channel, as nnU-Net stores multi-sequence cases: ``CASE_0000.nii.gz``
(channel 0), ``CASE_0001.nii.gz``, ... The files must describe the same voxels (shape, spacing)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from medcnn.errors import InputError
from medcnn.io.image import Image
from medcnn.io.registry import image_suffix, read_image

CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<k>\d{4})$")


def channel_files(path: str | Path, channels: int) -> list[Path]:
    """The ``channels`` files of the case that ``path`` (any of its channel files) belongs to; just
    ``path`` when one file is all the model needs, or the name is not ``CASE_000k`` with k below
    ``channels`` (a photograph called IMG_1234.jpg is one file)."""
    path = Path(path)
    suffix = image_suffix(path) or ""
    m = CHANNEL_FILE.match(path.name[:len(path.name) - len(suffix)])
    if channels <= 1 or m is None or int(m["k"]) >= channels:
        return [path]
    return [path.with_name(f"{m['case']}_{k:04d}{path.name[len(path.name) - len(suffix):]}") for k in range(channels)]


def case_files(path: str | Path, channels: int) -> list[Path]:
    """:func:`channel_files` when they all exist, else ``path`` alone (a file that holds every channel)."""
    files = channel_files(path, channels)
    return files if all(f.exists() for f in files) else [Path(path)]


def same_grid(a: Image, b: Image, pa: Path, pb: Path, tol: float = 1e-3) -> None:
    """InputError unless ``b`` (file ``pb``) has ``a``'s shape and spacing."""
    if a.spatial_shape != b.spatial_shape:
        raise InputError(f"shape {b.spatial_shape} differs from its image's {a.spatial_shape} ({pa.name})", pb)
    if not np.allclose(a.spacing, b.spacing, rtol=tol, atol=tol):
        raise InputError(f"spacing {tuple(round(s, 4) for s in b.spacing)} mm differs from its image's "
                         f"{tuple(round(s, 4) for s in a.spacing)} mm ({pa.name})", pb)


def stack_channels(files: list[Path], tol: float = 1e-3) -> Image:
    """The files' images stacked as channels (geometry and metadata of the first)."""
    parts = [read_image(f) for f in files]
    for f, other in zip(files[1:], parts[1:]):
        same_grid(parts[0], other, files[0], f, tol)
    if len(parts) == 1:
        return parts[0]
    return Image(np.concatenate([q.array for q in parts], 0), parts[0].affine, parts[0].meta)


def read_case(path: str | Path, channels: int) -> Image:
    """The image of ``path`` with the ``channels`` a model takes: a file that holds them all as it is,
    else the case's channel files (``CASE_0000``...) stacked, any of them naming the case."""
    files = channel_files(path, channels)
    if len(files) == 1:
        return read_image(files[0])
    missing = [f for f in files if not f.exists()]
    if missing:
        if Path(path).exists() and read_image(path).channels == channels:
            return read_image(path)
        raise InputError(f"{missing[0].name} is missing: the model takes {channels} channels, one file each "
                         f"({files[0].name} ... {files[-1].name})", path)
    return stack_channels(files)
