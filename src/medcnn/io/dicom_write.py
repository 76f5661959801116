"""Write an image as a new DICOM series (no source series needed): a volume as one instance per slice
with its geometry (ImagePositionPatient, ImageOrientationPatient, PixelSpacing, slice spacing) taken
from the image's affine, a 2D image as one instance; new Study (unless given), Series and SOP Instance
UIDs; values kept exactly when they are integers that fit 16 bits, else stored as 16-bit integers
with a RescaleSlope / RescaleIntercept (a step of (max - min) / 65535). ``medcnn.io.read_image`` reads
the series back to the same array and affine. File names are numbers."""
from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medcnn.errors import InputError
from medcnn.io.image import Image
from medcnn.utils.files import atomic_path

SOP_CLASSES = {"MR": "1.2.840.10008.5.1.4.1.1.4", "CT": "1.2.840.10008.5.1.4.1.1.2"}
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def _stored(values: np.ndarray) -> tuple[np.ndarray, float, float, bool]:
    """(stored 16-bit pixels, slope, intercept, signed) for ``values``."""
    v = np.asarray(values, np.float64)
    lo, hi = float(v.min()), float(v.max())
    if np.all(v == np.round(v)) and lo >= -32768 and hi <= 65535 and (lo >= 0 or hi <= 32767):
        signed = lo < 0
        return v.astype(np.int16 if signed else np.uint16), 1.0, 0.0, signed
    slope = (hi - lo) / 65535 if hi > lo else 1.0
    return np.round((v - lo) / slope).astype(np.uint16), slope, lo, False


def _base(sop_class: str, modality: str, study: str, series: str, frame: str, number: int, description: str,
          patient: tuple[str, str]) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    now = datetime.datetime.now()
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
    ds.Modality, ds.SeriesDescription, ds.SeriesNumber, ds.InstanceNumber = modality, description, 1, number
    ds.PatientName, ds.PatientID = patient
    ds.PatientBirthDate, ds.PatientSex = "", ""  # type 2: present, may be empty
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "", ""
    ds.Manufacturer = "medcnn"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    return ds


def _pixels(ds: FileDataset, plane: np.ndarray, slope: float, intercept: float, signed: bool) -> None:
    ds.Rows, ds.Columns = int(plane.shape[0]), int(plane.shape[1])
    ds.PixelRepresentation = 1 if signed else 0
    ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.10g}", f"{intercept:.10g}"
    ds.PixelData = np.ascontiguousarray(plane).tobytes()


def write_dicom_series(image: Image, dest: str | Path, *, modality: str = "MR", study_uid: str | None = None,
                       description: str = "medcnn", patient: tuple[str, str] = ("ANONYMOUS", "ANONYMOUS")) -> list[Path]:
    """``image`` (one channel; 2D or 3D) as a new series in the new folder ``dest``; the files written."""
    if image.channels != 1:
        raise InputError(f"a DICOM series holds one channel; this image has {image.channels}", image.meta.get("source"))
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=False)
    study, series, frame = study_uid or generate_uid(), generate_uid(), generate_uid()
    stored, slope, intercept, signed = _stored(image.array[0])
    if image.spatial_dims == 2:  # (rows, cols)
        ds = _base(SECONDARY_CAPTURE, modality, study, series, frame, 1, description, patient)
        sx, sy = (float(np.linalg.norm(image.affine[:2, k])) for k in (0, 1))
        ds.PixelSpacing = [f"{sx:.10g}", f"{sy:.10g}"]
        _pixels(ds, stored, slope, intercept, signed)
        return [_save(ds, dest / "000000.dcm")]
    lps = np.asarray(image.affine, np.float64).copy()
    lps[:2] *= -1  # RAS -> DICOM LPS
    col_sp, row_sp = float(np.linalg.norm(lps[:3, 0])), float(np.linalg.norm(lps[:3, 1]))
    r, c, step, origin = lps[:3, 0] / col_sp, lps[:3, 1] / row_sp, lps[:3, 2], lps[:3, 3]
    if abs(float(r @ c)) > 1e-3:
        raise InputError("the image's in-plane axes are not orthogonal (sheared); DICOM cannot store it",
                         image.meta.get("source"))
    n = stored.shape[2]
    if float(step @ np.cross(r, c)) < 0:  # slices stored along the plane's normal, as readers sort them
        stored, origin, step = stored[..., ::-1], origin + (n - 1) * step, -step
    files = []
    for k in range(n):
        ds = _base(SOP_CLASSES.get(modality, SECONDARY_CAPTURE), modality, study, series, frame, k + 1, description, patient)
        ds.ImageOrientationPatient = [f"{v:.10g}" for v in (*r, *c)]
        ds.ImagePositionPatient = [f"{v:.10g}" for v in origin + k * step]
        ds.PixelSpacing = [f"{row_sp:.10g}", f"{col_sp:.10g}"]
        ds.SliceThickness = ds.SpacingBetweenSlices = f"{float(np.linalg.norm(step)):.10g}"
        _pixels(ds, stored[:, :, k].T, slope, intercept, signed)  # (cols, rows) -> (rows, cols)
        files.append(_save(ds, dest / f"{k:06d}.dcm"))
    return files


def _save(ds: FileDataset, path: Path) -> Path:
    with atomic_path(path) as tmp:
        pydicom.dcmwrite(tmp, ds, enforce_file_format=True)
    return path
