"""DICOM: one file (2D image or multi-frame volume) or a folder holding one series.

Pixels come back float32 after the modality LUT / rescale, MONOCHROME1 inverted, colour as
RGB. ``meta`` holds only non-identifying attributes: never patient name, ID or dates.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from medcnn.errors import InputError, MedcnnError
from medcnn.io.image import Image

from .registry import check_file, check_pixels, one_line

log = logging.getLogger(__name__)
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_META_TEXT = {"modality": "Modality", "series_instance_uid": "SeriesInstanceUID",
              "study_instance_uid": "StudyInstanceUID", "series_description": "SeriesDescription",
              "body_part_examined": "BodyPartExamined", "manufacturer": "Manufacturer"}


def _load(path: Path, header_only: bool = False):
    """dcmread with every element parsed now, so that a corrupt file fails here."""
    from pydicom import dcmread, uid
    from pydicom.errors import InvalidDicomError
    try:
        try:
            ds = dcmread(path, stop_before_pixels=header_only)
        except InvalidDicomError:  # no 'DICM' preamble: accept it only if it parses as DICOM
            try:
                ds = dcmread(path, stop_before_pixels=header_only, force=True)
                ok = "SOPClassUID" in ds
            except Exception:
                ok = False
            if not ok:
                raise InputError("not a DICOM file (no 'DICM' marker and no DICOM header)", path) from None
            if "TransferSyntaxUID" not in ds.file_meta:  # old files without meta: use how it parsed
                implicit, little = ds.original_encoding
                ds.file_meta.TransferSyntaxUID = uid.ImplicitVRLittleEndian if implicit else (
                    uid.ExplicitVRLittleEndian if little else uid.ExplicitVRBigEndian)
        for _ in ds.iterall():
            pass
        if len(ds) == 0:  # pydicom only warns when a file ends mid-element
            raise InputError("corrupt or truncated DICOM file (no data element could be read)", path)
    except (MedcnnError, MemoryError):
        raise
    except Exception as e:
        raise InputError(f"corrupt or truncated DICOM file ({one_line(e)})", path) from None
    return ds


def _find(ds, keyword: str, frame: int = 0):
    """An attribute at top level, else in the per-frame or shared functional groups."""
    if keyword in ds:
        return ds[keyword].value
    for seq_kw, idx in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        seq = ds.get(seq_kw)
        if seq and len(seq) > idx:
            for elem in seq[idx]:
                if elem.VR == "SQ" and elem.value and keyword in elem.value[0]:
                    return elem.value[0][keyword].value
    return None


def _floats(value, n: int | None = None) -> np.ndarray | None:
    """A numeric (multi-)value as floats, or None when absent or malformed."""
    if value is None or value == "":
        return None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        value = [value]
    try:
        vals = np.array([float(v) for v in value])
    except (TypeError, ValueError):
        return None
    return vals if vals.size and np.isfinite(vals).all() and (n is None or vals.size == n) else None


def _recorded_spacing(ds) -> tuple[float, float] | None:
    """(between rows, between columns) in mm, or None where the file gives neither pixel spacing."""
    for kw in ("PixelSpacing", "ImagerPixelSpacing"):
        ps = _floats(_find(ds, kw), 2)
        if ps is not None and (ps > 0).all():
            return float(ps[0]), float(ps[1])
    return None


def _pixel_spacing(ds) -> tuple[float, float]:
    """(between rows, between columns) in mm; 1.0 when unknown."""
    return _recorded_spacing(ds) or (1.0, 1.0)


def _rescale(arr: np.ndarray, ds, frame: int = 0) -> tuple[np.ndarray, float, float]:
    """Modality LUT or RescaleSlope/Intercept applied, as float32, with (slope, intercept)."""
    if "ModalityLUTSequence" in ds:
        from pydicom.pixels import apply_modality_lut
        return apply_modality_lut(arr, ds).astype(np.float32), float("nan"), float("nan")
    s = _floats(_find(ds, "RescaleSlope", frame), 1)
    b = _floats(_find(ds, "RescaleIntercept", frame), 1)
    s, b = (1.0 if s is None else float(s[0])), (0.0 if b is None else float(b[0]))
    if s == 1.0 and b == 0.0:
        return arr.astype(np.float32), s, b
    return (arr.astype(np.float64) * s + b).astype(np.float32), s, b


def _check_decoder(ds, path: Path) -> str:
    """Raise if no installed plugin decodes the transfer syntax; else a hint naming others."""
    from pydicom.pixels import get_decoder
    tsyntax = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
    if tsyntax is None:
        return ""
    if not tsyntax.is_transfer_syntax:
        raise InputError(f"the transfer syntax UID {str(tsyntax)[:64]!r} is not a DICOM transfer syntax", path)
    if not tsyntax.is_compressed:
        return ""
    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError:
        raise InputError(f"unsupported transfer syntax '{tsyntax.name}' ({tsyntax}): "
                         "pydicom has no decoder for it", path) from None
    needs = "; ".join(d.split(" - requires ")[-1].replace("numpy and ", "").replace(" and ", " + ")
                      .replace("gdcm>", "python-gdcm>") for d in decoder.missing_dependencies)
    if not decoder.is_available:
        raise InputError(f"pixel data compressed as '{tsyntax.name}' ({tsyntax}) needs a decoder "
                         f"that is not installed; install one of: {needs}", path)
    return f"; other decoders for '{tsyntax.name}': {needs}" if needs else ""


def _decode(ds, path: Path) -> tuple[np.ndarray, dict]:
    """Pixels as float32 (frames, channels, rows, cols), and facts about the conversion."""
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        uid = ds.get("SOPClassUID")
        sop = uid.name if hasattr(uid, "is_valid") and uid.is_valid else "unknown SOP class"
        if "Rows" in ds or "Image Storage" in sop:
            raise InputError(f"{sop} without pixel data: the file is truncated or corrupt", path)
        raise InputError(f"no pixel data (e.g. a structured report or RT object; this is {sop})", path)
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        nf, spp = int(ds.get("NumberOfFrames") or 1), int(ds.get("SamplesPerPixel") or 1)
    except (AttributeError, TypeError, ValueError) as e:
        raise InputError(f"invalid image dimensions ({one_line(e)})", path) from None
    channels = 3 if photometric == "PALETTE COLOR" else spp
    check_pixels(nf * rows * cols * channels, f"{nf} x {rows} x {cols} x {channels}", path)
    hint = _check_decoder(ds, path)
    try:
        raw = ds.pixel_array  # YBR is converted to RGB by default
        if photometric == "PALETTE COLOR":
            from pydicom.pixels import apply_color_lut
            raw = apply_color_lut(raw, ds)
            if int(ds.RedPaletteColorLookupTableDescriptor[2]) == 16:
                raw = raw >> 8  # 16-bit LUT entries -> 0..255 like other colour images
        a = raw.reshape(nf, rows, cols, -1).transpose(0, 3, 1, 2)
    except (MedcnnError, MemoryError, KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # decoder plugins written in Rust raise pyo3 panics, which are BaseExceptions
        raise InputError(f"cannot decode pixel data ({one_line(e)}){hint}", path) from None
    info = {"photometric_interpretation": photometric or None, "rescale_applied": False, "invert_sum": None}
    if a.shape[1] != 1:
        return a.astype(np.float32), info
    out = np.empty(a.shape, np.float32)
    for f in range(nf):
        out[f], s, b = _rescale(a[f], ds, f)
        if f == 0:
            info.update(rescale_slope=s, rescale_intercept=b, rescale_applied=(s, b) != (1.0, 0.0))
    if photometric == "MONOCHROME1":  # invert to MONOCHROME2 over the stored value range
        bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
        lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if ds.get("PixelRepresentation") == 1 else (0, 2**bits - 1)
        total = float(_rescale(np.array([lo, hi]), ds)[0].sum())
        np.subtract(np.float32(total), out, out=out)
        info["invert_sum"] = total
    return out, info


def _meta(ds, sop_uids: list[str], info: dict) -> dict:
    """Non-identifying facts only: never patient name, ID, dates or institution."""
    meta = {"format": "dicom", "sop_instance_uids": sop_uids,
            "spatial_unit": "unknown" if _recorded_spacing(ds) is None else "mm"}  # Image.length_unit
    meta.update({key: str(ds.get(kw)) if ds.get(kw) not in (None, "") else None for key, kw in _META_TEXT.items()})
    for key, kw in (("window_center", "WindowCenter"), ("window_width", "WindowWidth")):
        v = _floats(_find(ds, kw))
        meta[key] = None if v is None else float(v[0])
    if info["invert_sum"] is not None and meta["window_center"] is not None:
        meta["window_center"] = info["invert_sum"] - meta["window_center"]
    meta["inverted"] = info.pop("invert_sum") is not None
    meta.update(info)
    meta["bits_stored"] = int(ds["BitsStored"].value) if ds.get("BitsStored") else None
    return meta


def _geometry(ds, positions, numbers, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Slice order and RAS affine of a (cols, rows, slices) volume."""
    n, (row_sp, col_sp) = len(positions), _pixel_spacing(ds)
    dz = next((float(v[0]) for kw in ("SpacingBetweenSlices", "SliceThickness")
               if (v := _floats(_find(ds, kw), 1)) is not None and v[0] > 0), 1.0)
    order = np.argsort(numbers, kind="stable") if None not in numbers else np.arange(n)
    iop = _floats(_find(ds, "ImageOrientationPatient"), 6)
    if iop is not None and not (np.allclose(np.linalg.norm(iop.reshape(2, 3), axis=1), 1, atol=0.05)
                                and np.linalg.norm(np.cross(iop[:3], iop[3:])) > 0.9):
        iop = None  # not two orthogonal unit vectors: as good as absent
    if iop is None:  # orientation unknown: axis-aligned
        return order, np.diag([col_sp, row_sp, dz, 1.0])
    r, c = iop[:3], iop[3:]
    normal = np.cross(r, c)
    origin = _floats(_find(ds, "ImagePositionPatient"), 3)
    step, origin = normal * dz, np.zeros(3) if origin is None else origin
    if all(p is not None for p in positions):  # sort along the normal, step from positions
        pos = np.array(positions, dtype=np.float64)
        proj = pos @ normal
        order = np.argsort(proj, kind="stable")
        gaps = np.diff(proj[order])
        if n > 1 and gaps.min() < 1e-3:
            raise InputError(f"{n} slices at only {int((gaps >= 1e-3).sum()) + 1} positions: several volumes "
                             "(echoes, time points...) in one series are not supported", path)
        if n > 2 and gaps.max() - gaps.min() > 0.1 * np.median(gaps):
            # a regular grid would misplace slices and every measurement in mm would be wrong
            raise InputError(f"slice spacing varies from {gaps.min():.3g} to {gaps.max():.3g} mm along the series "
                             f"(missing slices?); supply the complete series", path)
        origin = pos[order[0]]
        step = (pos[order[-1]] - origin) / (n - 1) if n > 1 else step
    aff = np.eye(4)
    aff[:3, 0], aff[:3, 1], aff[:3, 2], aff[:3, 3] = r * col_sp, c * row_sp, step, origin
    aff[:2] *= -1  # DICOM LPS -> RAS
    return order, aff


def read_dicom(path: Path) -> Image:
    """One DICOM file: (C, rows, cols) for one frame, (C, cols, rows, frames) for several."""
    ds = _load(path)
    arr, info = _decode(ds, path)
    meta = _meta(ds, [str(ds.get("SOPInstanceUID", ""))], info)
    if arr.shape[0] == 1:
        return Image.from_spacing(arr[0], spacing=_pixel_spacing(ds), meta=meta)
    nf = arr.shape[0]
    if "PerFrameFunctionalGroupsSequence" in ds:
        positions = [_floats(_find(ds, "ImagePositionPatient", f), 3) for f in range(nf)]
    else:
        offsets, ipp = _floats(ds.get("GridFrameOffsetVector"), nf), _floats(ds.get("ImagePositionPatient"), 3)
        iop = _floats(ds.get("ImageOrientationPatient"), 6)
        positions = [None] * nf
        if offsets is not None and ipp is not None and iop is not None:  # RT dose grids
            positions = [ipp + (o - offsets[0]) * np.cross(iop[:3], iop[3:]) for o in offsets]
    order, aff = _geometry(ds, positions, list(range(nf)), path)
    return Image(np.ascontiguousarray(arr[order].transpose(1, 3, 2, 0)), aff, meta)


def _image_headers(folder: Path) -> list:
    """(path, header) of the DICOM images in ``folder``: .dcm/.dicom files and any with 'DICM'."""
    headers = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or p.name.upper() == "DICOMDIR" or not p.is_file():
            continue
        if not os.access(p, os.R_OK):
            raise InputError("cannot open file (permission denied)", p)
        if is_dicom_file(p) and check_file(p) and "Rows" in (ds := _load(p, header_only=True)):
            headers.append((p, ds))  # non-images (SR, presentation states...) are skipped
    return headers


def is_dicom_file(path: Path) -> bool:
    """True for a .dcm/.dicom file or any file with the 'DICM' marker (DICOM files are often
    named without a suffix, or with a number as one)."""
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False


def dicom_identity(path: Path) -> tuple[str, str, str] | None:
    """(PatientID, StudyInstanceUID, SeriesInstanceUID) of a DICOM file, or of the first DICOM
    file of a series folder, '' where absent; None when ``path`` holds no DICOM. Only for grouping:
    callers must not write these values out."""
    from pydicom import dcmread

    if path.is_dir():
        path = next((p for p in sorted(path.iterdir()) if p.is_file() and not p.name.startswith(".")
                     and p.name.upper() != "DICOMDIR" and is_dicom_file(p)), None)
        if path is None:
            return None
    elif not is_dicom_file(path):
        return None
    try:
        ds = dcmread(path, stop_before_pixels=True,
                     specific_tags=["PatientID", "StudyInstanceUID", "SeriesInstanceUID"])
    except Exception:  # noqa: BLE001 - an unreadable file is reported when its pixels are read
        return None
    return tuple(str(ds.get(k, "") or "").strip() for k in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID"))


def _instance_number(ds) -> int | None:
    try:
        return int(ds.get("InstanceNumber"))
    except (TypeError, ValueError):  # absent or malformed: order by position alone
        return None


def read_dicom_series(folder: Path) -> Image:
    """All DICOM images in ``folder`` (one series) as a (C, cols, rows, slices) volume."""
    headers = _image_headers(folder)
    if not headers:
        sub = " (subfolders are not searched)" if any(p.is_dir() for p in folder.iterdir()) else ""
        raise InputError(f"no DICOM files found{sub}", folder)
    series = {str(ds.get("SeriesInstanceUID", "")) for _, ds in headers}
    if len(series) > 1:
        raise InputError(f"folder holds {len(series)} DICOM series; pass the folder of one series", folder)
    if any(int(ds.get("NumberOfFrames") or 1) > 1 for _, ds in headers):
        if len(headers) == 1:
            return read_dicom(headers[0][0])
        raise InputError("series mixes several multi-frame files; read them one by one", folder)
    (p0, ds0), n = headers[0], len(headers)
    iop0 = _floats(ds0.get("ImageOrientationPatient"), 6)
    for p, ds in headers[1:]:
        if (ds.get("Rows"), ds.get("Columns")) != (ds0.get("Rows"), ds0.get("Columns")):
            raise InputError(f"slices have different sizes ({ds0.get('Rows')}x{ds0.get('Columns')} in {p0.name}, "
                             f"{ds.get('Rows')}x{ds.get('Columns')} in {p.name})", folder)
        iop = _floats(ds.get("ImageOrientationPatient"), 6)
        if (iop is None) != (iop0 is None) or iop is not None and not np.allclose(iop, iop0, atol=1e-3):
            raise InputError(f"slices have different orientations ({p0.name}, {p.name}), "
                             "e.g. a localizer series", folder)
    try:
        rows, cols = int(ds0.Rows), int(ds0.Columns)
        spp = int(ds0.get("SamplesPerPixel") or 1)
    except (AttributeError, TypeError, ValueError) as e:
        raise InputError(f"invalid image dimensions in {p0.name} ({one_line(e)})", folder) from None
    check_pixels(rows * cols * n * spp, f"{n} x {rows} x {cols}", folder)
    positions = [_floats(ds.get("ImagePositionPatient"), 3) for _, ds in headers]
    numbers = [_instance_number(ds) for _, ds in headers]
    order, aff = _geometry(ds0, positions, numbers, folder)
    out, info = None, {}
    for k, i in enumerate(order):
        p = headers[i][0]
        a, slice_info = _decode(_load(p), p)
        if out is None:
            out, info = np.empty((a.shape[1], cols, rows, n), np.float32), slice_info
        if a.shape[0] != 1 or a.shape[1:] != (out.shape[0], rows, cols):
            raise InputError(f"slice {p.name} has shape {a.shape[1:]}, not {(out.shape[0], rows, cols)}", folder)
        out[..., k] = a[0].transpose(0, 2, 1)
        info["rescale_applied"] = info["rescale_applied"] or slice_info["rescale_applied"]
    first = headers[order[0]][1]
    uids = [str(headers[i][1].get("SOPInstanceUID", "")) for i in order]
    return Image(out, aff, _meta(first, uids, info))
