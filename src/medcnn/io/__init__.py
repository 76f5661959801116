"""Image readers: ``read_image(path)`` returns a :class:`medcnn.io.image.Image`.

Dispatch is by suffix, then by content (DICOM, NIfTI and image magic bytes); a folder is
read as one DICOM series. Add a format with ``register_reader(".mha", func)``. Readers
import their libraries (pydicom, nibabel, Pillow, tifffile) only when first used.
"""
from __future__ import annotations

from .dicom import read_dicom, read_dicom_series
from .nifti import read_nifti
from .pil import read_pil, read_tiff
from .registry import (
    MAX_FILE_BYTES,
    MAX_PIXELS,
    image_suffix,
    image_suffixes,
    read_image,
    register_reader,
    set_directory_reader,
    supported_suffixes,
)

register_reader((".dcm", ".dicom"), read_dicom)
register_reader((".nii", ".nii.gz"), read_nifti)
register_reader((".png", ".jpg", ".jpeg", ".bmp", ".gif"), read_pil)
register_reader((".tif", ".tiff"), read_tiff)
set_directory_reader(read_dicom_series)

__all__ = ["MAX_FILE_BYTES", "MAX_PIXELS", "read_image", "register_reader", "supported_suffixes",
           "image_suffix", "image_suffixes",
           "read_dicom", "read_dicom_series", "read_nifti", "read_pil", "read_tiff"]
