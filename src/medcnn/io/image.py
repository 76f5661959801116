"""The one image type every reader returns and every task consumes.

An :class:`Image` is a channel-first array plus its geometry. ``affine`` maps a voxel index
(in the order of the array's spatial axes) to patient coordinates in millimetres, in the
RAS+ convention NIfTI uses; spacing, origin and direction are derived from it, so there is
one source of truth. Metadata (modality, the source's UIDs, window...) lives in ``meta``, on
the image and not on every tensor operation.

Axis order of ``array`` (C, *spatial):
- 2D images (PNG/JPEG/TIFF, a single DICOM frame): (C, rows, columns), as displayed.
- NIfTI volumes: the file's voxel order (i, j, k).
- DICOM series: (columns, rows, slices), the order a DICOM-to-NIfTI converter writes, so
  the same scan read from DICOM or from its NIfTI conversion has the same array.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# NIfTI's names of a length unit -> the symbol a size is written with
LENGTH_UNITS = {"mm": "mm", "micron": "um", "meter": "m"}


@dataclass
class Image:
    array: np.ndarray
    affine: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.array.ndim < 3:
            raise ValueError(f"Image.array must be channel-first (C, *spatial), got shape {self.array.shape}")
        n = self.array.ndim - 1
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.affine.shape != (n + 1, n + 1):
            raise ValueError(f"affine must be {(n + 1, n + 1)} for {n} spatial axes, got {self.affine.shape}")

    @classmethod
    def from_spacing(cls, array: np.ndarray, spacing=None, origin=None, meta=None) -> "Image":
        """Build an image with an axis-aligned geometry (identity direction)."""
        n = array.ndim - 1
        aff = np.eye(n + 1)
        if spacing is not None:
            aff[:n, :n] = np.diag(np.asarray(spacing, dtype=np.float64))
        if origin is not None:
            aff[:n, n] = np.asarray(origin, dtype=np.float64)
        return cls(array, aff, dict(meta or {}))

    @property
    def channels(self) -> int:
        return int(self.array.shape[0])

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.array.shape[1:])

    @property
    def spatial_dims(self) -> int:
        return self.array.ndim - 1

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size in mm along each spatial axis of ``array``."""
        n = self.spatial_dims
        return tuple(float(v) for v in np.linalg.norm(self.affine[:n, :n], axis=0))

    @property
    def length_unit(self) -> str | None:
        """The unit of ``spacing`` as the file recorded it, or None where the file gives no size.

        ``meta["spatial_unit"]`` holds what the reader found (NIfTI's names: "mm", "micron", "meter",
        "unknown"); images made in code, without it, are in mm. "unknown" with voxels of exactly 1 in
        every direction (ordinary photographs, DICOM without a pixel spacing, NIfTI written without a
        voxel size) has no size: measurements are then in voxels. "unknown" with any other voxel size
        is read as mm, the unit NIfTI writers assume when they leave the field empty.
        """
        unit = self.meta.get("spatial_unit", "mm")
        if unit in LENGTH_UNITS:
            return LENGTH_UNITS[unit]
        return "mm" if any(s != 1.0 for s in self.spacing) else None

    @property
    def origin(self) -> tuple[float, ...]:
        n = self.spatial_dims
        return tuple(float(v) for v in self.affine[:n, n])

    @property
    def direction(self) -> np.ndarray:
        """Unit column vectors of the voxel axes in patient (RAS) space."""
        n = self.spatial_dims
        sp = np.asarray(self.spacing)
        sp[sp == 0] = 1.0
        return self.affine[:n, :n] / sp

    def __repr__(self) -> str:  # keep reprs short: arrays can be large
        sp = ", ".join(f"{s:.3g}" for s in self.spacing)
        return f"Image(shape={tuple(self.array.shape)}, dtype={self.array.dtype}, spacing=({sp}))"
