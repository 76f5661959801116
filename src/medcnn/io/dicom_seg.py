"""DICOM SEG (highdicom) for a label map predicted on a DICOM series, referencing that series so a
PACS viewer overlays it on the source images.

The label map must be on the series' own grid as medcnn reads it: array axes (columns, rows,
slices) with slices in the order of ``image.meta["sop_instance_uids"]``. Each label becomes one
segment (BINARY, frames without the segment omitted). Patient and study attributes are copied
from the source by highdicom, as DICOM requires; nothing identifying goes into the file name.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from medcnn import __version__
from medcnn.errors import InputError
from medcnn.io.image import Image
from medcnn.io.phi import deidentify
from medcnn.io.registry import one_line
from medcnn.utils.files import atomic_path


def source_datasets(series: Path, uids: list[str], pixels: bool = True):
    """The series' instances with these SOPInstanceUIDs, in that order (headers only unless ``pixels``)."""
    from pydicom import dcmread

    files = [series] if series.is_file() else sorted(p for p in series.iterdir() if p.is_file() and not p.name.startswith("."))
    by_uid = {}
    for f in files:
        try:
            ds = dcmread(f, stop_before_pixels=not pixels)
        except Exception:  # non-DICOM files in the folder were skipped by the reader too
            continue
        by_uid[str(ds.get("SOPInstanceUID", ""))] = ds
    missing = [u for u in uids if u not in by_uid]
    if missing:
        raise InputError(f"{len(missing)} source instance(s) of the segmented series are no longer in the folder", series)
    return [by_uid[u] for u in uids]


def series_label(label: Image, source_image: Image | None, series: Path, what: str) -> tuple[np.ndarray, list[str]]:
    """(label array (columns, rows, slices), the source instance UIDs of its slices), or the InputError
    saying why ``what`` cannot reference the series."""
    uids = (source_image.meta if source_image is not None else label.meta).get("sop_instance_uids") or []
    if label.spatial_dims != 3 or not uids:
        raise InputError(f"{what} needs the 3D label map of a DICOM series (source instance UIDs unknown)", series)
    arr = label.array[0]
    if arr.shape[2] != len(uids):
        raise InputError(f"the label map has {arr.shape[2]} slices but the series {len(uids)} instances", series)
    return arr, uids


def write_dicom_seg(series: str | Path, label: Image, names: dict[int, str], path: str | Path, *,
                    source_image: Image | None = None, keep_phi: bool = False) -> Path:
    """A DICOM SEG of ``label`` referencing the source ``series``; patient identity emptied unless
    ``keep_phi`` (``medcnn.io.phi``)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    series = Path(series)
    arr, uids = series_label(label, source_image, series, "DICOM SEG")
    sources = source_datasets(series, uids)
    frames = np.ascontiguousarray(np.transpose(arr, (2, 1, 0))).astype(np.uint8)  # (slices, rows, columns)
    present = [int(v) for v in np.unique(frames) if v > 0]
    segments = sorted(set(present) | {k for k in names if k > 0})
    algo = hd.AlgorithmIdentificationSequence(name="medcnn", family=codes.cid7162.ArtificialIntelligence,
                                              version=__version__)
    descriptions = [hd.seg.SegmentDescription(
        segment_number=i, segment_label=str(names.get(i, f"label {i}"))[:64],
        segmented_property_category=codes.SCT.Tissue, segmented_property_type=codes.SCT.Tissue,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algo)
        for i in segments]
    # a label map with values = segment numbers; segment numbers must run 1..n
    remap = np.zeros(max(segments) + 1, np.uint8)
    for n, v in enumerate(segments, start=1):
        remap[v] = n
    for n, d in enumerate(descriptions, start=1):
        d.SegmentNumber = n
    try:
        seg = _segmentation(hd, sources, remap[frames], descriptions, present)
    except (AttributeError, ValueError, TypeError, KeyError, IndexError) as e:
        raise InputError(f"cannot write a DICOM SEG for this series: its headers lack what SEG needs "
                         f"({type(e).__name__}: {one_line(e)})", series) from None
    if not keep_phi:
        deidentify(seg)
    path = Path(path)
    with atomic_path(path) as tmp:
        seg.save_as(tmp)
    return path


def read_dicom_seg(seg, image: Image, names: dict[int, str] | None = None) -> Image:
    """A DICOM SEG (a path or dataset) as a label map on ``image``, the series it references read by
    medcnn: segment k gets value k, or the value ``names`` gives its label (what :func:`write_dicom_seg`
    wrote comes back as it was). Frames the SEG omits are empty."""
    import highdicom as hd
    import pydicom

    ds = seg if isinstance(seg, pydicom.Dataset) else pydicom.dcmread(seg)
    uids = image.meta.get("sop_instance_uids") or []
    if image.spatial_dims != 3 or not uids:
        raise InputError("a DICOM SEG is read onto the 3D image of the series it references", image.meta.get("source"))
    seg = hd.seg.Segmentation.from_dataset(ds, copy=False)
    values = {str(v): k for k, v in (names or {}).items()}
    out = np.zeros((len(uids), *image.spatial_shape[1::-1]), np.uint8)  # (slices, rows, columns)
    referenced = {u[2] for u in seg.get_source_image_uids()}
    present = [i for i, u in enumerate(uids) if u in referenced]
    if not present:
        raise InputError("the DICOM SEG references none of this series' instances", image.meta.get("source"))
    for n in seg.get_segment_numbers():
        value = values.get(seg.get_segment_description(n).SegmentLabel, n)
        planes = seg.get_pixels_by_source_instance([uids[i] for i in present], segment_numbers=[n],
                                                   combine_segments=True)
        for i, plane in zip(present, planes):
            out[i][plane > 0] = value
    return Image(np.transpose(out, (2, 1, 0))[None], image.affine.copy(), {"format": "dicom-seg", "spatial_unit": image.meta.get("spatial_unit", "mm")})


def _segmentation(hd, sources, label_map, descriptions, present):
    return hd.seg.Segmentation(
        source_images=sources, pixel_array=label_map, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=9000,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="medcnn", manufacturer_model_name="medcnn",
        software_versions=__version__, device_serial_number="none", content_label="MEDCNN",
        content_description="medcnn automatic segmentation",
        omit_empty_frames=bool(present))  # an all-empty result keeps its (empty) frames


def _quiet(fn):
    """highdicom warns about person-name formats by quoting the patient's name: keep it out of logs."""
    import functools
    import warnings

    @functools.wraps(fn)
    def wrapper(*a, **kw):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*person name.*")
            return fn(*a, **kw)

    return wrapper


write_dicom_seg = _quiet(write_dicom_seg)
