"""RTSTRUCT (rt-utils) for a label map predicted on a DICOM series, for radiotherapy planning systems,
and its reverse: the contours of an RTSTRUCT rasterised onto a series' grid.

Each label becomes one ROI of closed planar contours traced through the centres of its boundary
voxels, slice by slice (OpenCV, via rt-utils), so rasterising them back, boundary voxels included,
gives the mask again; what can differ is the rim of a hole inside a slice (see :func:`read_rtstruct`).
The label map is on the series' grid as medcnn reads it: axes (columns, rows, slices), slices in the
order of ``image.meta["sop_instance_uids"]``. Patient and study attributes are copied from the source
(DICOM requires them to file the object with its images) and emptied unless ``keep_phi``.

Needs the ``rtstruct`` extra: ``pip install "medcnn[rtstruct]"`` (rt-utils, which brings OpenCV).
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

from medcnn import __version__
from medcnn.errors import InputError
from medcnn.io.dicom_seg import series_label, source_datasets
from medcnn.io.image import Image
from medcnn.io.phi import deidentify
from medcnn.utils.files import atomic_path

LPS = np.diag([-1.0, -1.0, 1.0])  # DICOM patient coordinates <-> medcnn's RAS affines


def _rt_utils():
    try:
        from rt_utils import ds_helper
        from rt_utils.rtstruct import RTStruct
    except ImportError:
        raise InputError('RTSTRUCT output needs the rtstruct extra: pip install "medcnn[rtstruct]" (rt-utils)') from None
    return ds_helper, RTStruct


def write_rtstruct(series: str | Path, label: Image, names: dict[int, str], path: str | Path, *,
                   source_image: Image | None = None, keep_phi: bool = False) -> Path:
    """An RTSTRUCT of ``label`` (one ROI per label named in ``names``, background 0 excluded)
    referencing the source ``series``; written atomically to ``path``."""
    import copy

    ds_helper, RTStruct = _rt_utils()
    series = Path(series)
    arr, uids = series_label(label, source_image, series, "RTSTRUCT")
    headers = []
    for ds in source_datasets(series, uids, pixels=False):
        ds = copy.copy(ds)
        # rt-utils steps along a row (the column index) by PixelSpacing[0], which DICOM defines as the
        # spacing between rows: give it the pair reversed so non-square pixels land where they are
        if "PixelSpacing" in ds:
            ds.PixelSpacing = list(ds.PixelSpacing)[::-1]
        headers.append(ds)
    try:
        rt = RTStruct(headers, ds_helper.create_rtstruct_dataset(headers))
        masks = np.transpose(arr, (1, 0, 2))  # rt-utils: (rows, columns, slices)
        for value, name in sorted(names.items()):
            if value > 0:
                with contextlib.redirect_stdout(io.StringIO()):  # rt-utils prints a note for an empty ROI
                    rt.add_roi(mask=masks == value, name=str(name)[:64], roi_generation_algorithm=0,
                               description="medcnn automatic segmentation")
    except (AttributeError, ValueError, TypeError, KeyError, IndexError, RTStruct.ROIException) as e:
        raise InputError(f"cannot write an RTSTRUCT for this series: {type(e).__name__}: {e}", series) from None
    ds = rt.ds
    ds.Manufacturer = ds.ManufacturerModelName = "medcnn"
    ds.SoftwareVersions = __version__
    ds.StructureSetLabel = "MEDCNN"
    ds.SeriesDescription = "medcnn automatic segmentation"
    ds.SeriesNumber = 9001
    for tag in ("InstitutionName",):
        if tag in ds:
            del ds[tag]
    if not keep_phi:
        deidentify(ds)
    path = Path(path)
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path


def read_rtstruct(path: str | Path, image: Image, names: dict[int, str] | None = None) -> Image:
    """The label map of an RTSTRUCT's contours on ``image``'s grid (a 3D image read from the
    referenced series). ROI ``k`` (in the file's order) gets value k, or the value ``names`` gives its
    name. Contours are filled with their boundary voxels; a contour inside another one of the same ROI
    on a slice is a hole (its interior is removed, its boundary voxels stay)."""
    import cv2
    import pydicom
    from matplotlib.path import Path as Polygon

    path = Path(path)
    ds = pydicom.dcmread(path)
    if ds.get("Modality") != "RTSTRUCT":
        raise InputError(f"not an RTSTRUCT (Modality {ds.get('Modality')})", path)
    if image.spatial_dims != 3:
        raise InputError("an RTSTRUCT is rasterised onto a 3D series", path)
    to_voxel = np.linalg.inv(image.affine)
    by_name = {str(v): k for k, v in (names or {}).items()}
    roi_names = {int(r.ROINumber): str(r.ROIName) for r in ds.get("StructureSetROISequence", [])}
    shape = image.spatial_shape
    out = np.zeros(shape, np.uint8)
    for n, roi in enumerate(ds.get("ROIContourSequence", []), start=1):
        value = by_name.get(roi_names.get(int(roi.ReferencedROINumber), ""), n)
        per_slice: dict[int, list[np.ndarray]] = {}
        for contour in roi.get("ContourSequence", []):
            pts = np.asarray(contour.ContourData, np.float64).reshape(-1, 3) @ LPS.T  # -> RAS
            vox = (np.c_[pts, np.ones(len(pts))] @ to_voxel.T)[:, :3]
            k = int(round(float(np.median(vox[:, 2]))))
            if not (0 <= k < shape[2]) or np.abs(vox[:, 2] - k).max() > 0.25:
                raise InputError(f"ROI {roi_names.get(int(roi.ReferencedROINumber), n)}: a contour is not "
                                 "on a slice of this series", path)
            per_slice.setdefault(k, []).append(np.round(vox[:, :2]).astype(np.int32))
        for k, polys in per_slice.items():
            mask = np.zeros((shape[1], shape[0]), np.uint8)  # cv2: (y = row, x = column)
            for p, hole in sorted(zip(polys, _holes(polys, Polygon)), key=lambda t: t[1]):
                filled = cv2.fillPoly(np.zeros_like(mask), [p], 1)
                if hole:  # its interior goes, its boundary voxels (traced through) stay
                    rim = cv2.polylines(np.zeros_like(mask), [p], True, 1)
                    mask &= ~(filled & ~rim) & 1
                else:
                    mask |= filled
            out[:, :, k][mask.T > 0] = value
    return Image(out[None], image.affine.copy(), {"format": "rtstruct", "spatial_unit": image.meta.get("spatial_unit", "mm")})


def _holes(polys: list[np.ndarray], Polygon) -> list[bool]:
    """Which of one slice's contours of one ROI are holes. Where the contours turn both ways (OpenCV,
    so rt-utils and medcnn, traces holes against the outer boundaries' direction), a contour turning
    against the largest one is a hole: this also tells a hole whose rim is the outline itself (a
    one-voxel ring). Otherwise a contour inside an odd number of others is one (the even-odd rule)."""
    area = np.array([0.5 * float(np.sum(p[:, 0] * np.roll(p[:, 1], -1) - np.roll(p[:, 0], -1) * p[:, 1]))
                     for p in polys])
    outer = np.sign(area[np.argmax(np.abs(area))])  # lines and single voxels enclose no area: never holes
    if outer and np.any(np.sign(area) == -outer):
        return [bool(np.sign(a) == -outer) for a in area]
    return [sum(Polygon(o).contains_point(p[0]) for o in polys if o is not p) % 2 == 1 for p in polys]
