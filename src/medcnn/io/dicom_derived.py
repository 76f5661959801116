"""Write a processed volume as a new DICOM series derived from its source series.

Every source instance is copied with its pixels replaced: a new SeriesInstanceUID (one per output
series) and SOPInstanceUID (per instance), the same StudyInstanceUID, geometry, pixel
representation, bits and rescale slope/intercept; ImageType DERIVED\\SECONDARY, a SeriesDescription
and DerivationDescription that say what was done. Pixels are stored uncompressed (Explicit VR
Little Endian). Restored values outside what the stored bits can hold are clipped, and counted.
Output file names are numbers, never patient data.
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np

from medcnn.errors import InputError
from medcnn.io.dicom_seg import source_datasets
from medcnn.io.image import Image
from medcnn.io.phi import deidentify
from medcnn.utils.files import atomic_path

log = logging.getLogger("medcnn.io")


def stored_range(ds) -> tuple[int, int]:
    bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if int(ds.get("PixelRepresentation", 0)) == 1 else (0, 2 ** bits - 1)


def to_stored(values: np.ndarray, ds) -> tuple[np.ndarray, int]:
    """Physical values (rescaled, MONOCHROME2) -> stored integers of ``ds``'s pixel format, and the
    number of clipped pixels."""
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    lo, hi = stored_range(ds)
    v = np.asarray(values, np.float64)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":  # the reader inverted it
        v = (lo * slope + intercept) + (hi * slope + intercept) - v
    raw = np.rint((v - intercept) / slope)
    clipped = int(((raw < lo) | (raw > hi)).sum())
    raw = np.clip(raw, lo, hi)
    allocated = int(ds.get("BitsAllocated") or 16)
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    dtype = {8: np.int8 if signed else np.uint8, 16: np.int16 if signed else np.uint16,
             32: np.int32 if signed else np.uint32}.get(allocated)
    if dtype is None:
        raise InputError(f"cannot write {allocated}-bit pixels")
    return raw.astype(dtype), clipped


def write_derived_series(series: str | Path, image: Image, out_dir: str | Path, *, description: str,
                         derivation: str, series_number_offset: int = 1000, keep_phi: bool = False) -> list[Path]:
    """``image`` (the processed volume, on the grid the DICOM reader gave, with the source's
    ``sop_instance_uids`` in ``meta``) -> one file per source instance under ``out_dir``; patient
    identity emptied unless ``keep_phi`` (``medcnn.io.phi``)."""
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    series, out_dir = Path(series), Path(out_dir)
    uids = image.meta.get("sop_instance_uids") or []
    if not uids:
        raise InputError("a derived DICOM series needs the source's instance UIDs (read the input with medcnn)", series)
    arr = image.array[0]
    if arr.ndim == 2:
        arr = arr.T[..., None]  # a single frame: (rows, cols) -> (cols, rows, 1)
    if arr.shape[-1] != len(uids):
        raise InputError(f"the volume has {arr.shape[-1]} slices but the series {len(uids)} instances", series)
    sources = source_datasets(series, uids)
    if any(int(ds.get("NumberOfFrames", 1) or 1) > 1 for ds in sources):
        raise InputError("multi-frame DICOM output is not supported yet; single-frame series only", series)
    if out_dir.resolve() == (series if series.is_dir() else series.parent).resolve():
        raise InputError("the output folder is the input's folder; choose another (inputs are never overwritten)", out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid()
    written, clipped = [], 0
    for k, src in enumerate(sources):
        ds = copy.deepcopy(src)
        frame = np.ascontiguousarray(arr[..., k].T)  # (rows, columns)
        if frame.shape != (int(ds.Rows), int(ds.Columns)):
            raise InputError(f"slice {k} is {frame.shape}, the source instance {int(ds.Rows)}x{int(ds.Columns)}", series)
        stored, n = to_stored(frame, ds)
        clipped += n
        ds.PixelData = stored.tobytes()
        ds["PixelData"].VR = "OB" if stored.dtype.itemsize == 1 else "OW"
        for kw in ("SmallestImagePixelValue", "LargestImagePixelValue", "LossyImageCompression",
                   "LossyImageCompressionRatio", "LossyImageCompressionMethod"):
            if kw in ds:
                del ds[kw]
        if "LossyImageCompression" in src:
            ds.LossyImageCompression = src.LossyImageCompression  # history of the source pixels stays stated
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        kinds = list(src.get("ImageType", ["ORIGINAL", "PRIMARY"]))
        ds.ImageType = ["DERIVED", "SECONDARY", *kinds[2:]]
        ds.SeriesDescription = (f"{src.get('SeriesDescription', '')} {description}").strip()[:64]
        ds.DerivationDescription = derivation[:1024]
        ds.SeriesNumber = int(src.get("SeriesNumber", 0) or 0) + series_number_offset
        if not keep_phi:
            deidentify(ds)
        path = out_dir / f"{k + 1:04d}.dcm"
        with atomic_path(path) as tmp:
            ds.save_as(tmp, enforce_file_format=True)
        written.append(path)
    if clipped:
        log.warning("%d restored pixel(s) were outside the stored range of the source and were clipped", clipped)
    return written
