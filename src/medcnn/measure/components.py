"""Measure a label map in physical units: per label its size (mm³ in 3D, mm² in 2D), its connected
components, and for each component the centroid and bounding box in voxel and patient coordinates.

Sizes come from the image geometry (|det| of the affine's spatial block, so oblique and
anisotropic voxels are measured correctly), never from an assumed 1 mm grid; where the file gave
no voxel size (photographs, NIfTI without one) sizes are voxel counts and the unit says so
(:func:`unit`). Components use full connectivity (26-neighbourhood in 3D, 8 in 2D), as
scikit-image and ITK do by default.
Patient coordinates are given in RAS+ (NIfTI, the Image convention) and, in 3D, LPS+ (what
DICOM viewers show). 2D images have no patient frame: their "RAS" is the image plane in mm.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medcnn.errors import InputError
from medcnn.io.image import Image


@dataclass
class Component:
    index: int  # 1 = largest
    voxels: int
    size_mm: float  # mm³ (3D) or mm² (2D)
    centroid_voxel: list[float]
    centroid_ras_mm: list[float]
    centroid_lps_mm: list[float]
    bbox_voxel: list[list[int]]  # [[lo, hi] per axis], hi inclusive
    bbox_ras_mm: list[list[float]]  # axis-aligned box around the voxel box's corners, [[min, max] per R, A, S]


@dataclass
class LabelMeasurement:
    label: int
    name: str
    voxels: int
    size_mm: float
    n_components: int
    components: list[Component] = field(default_factory=list)


def voxel_size_mm(affine: np.ndarray) -> float:
    """Volume (3D) or area (2D) of one voxel in mm³ / mm²."""
    n = affine.shape[0] - 1
    return float(abs(np.linalg.det(np.asarray(affine, dtype=np.float64)[:n, :n])))


def _to_patient(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    n = affine.shape[0] - 1
    return points @ affine[:n, :n].T + affine[:n, n]


def _bbox_patient(affine: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(m, n, 2) [min, max] per patient axis of the boxes around each voxel box's corners; ``lo`` /
    ``hi``: (m, n) inclusive voxel bounds."""
    n = lo.shape[1]
    edges = np.stack([lo - 0.5, hi + 0.5], axis=-1)  # (m, n, 2)
    pts = np.stack([_to_patient(affine, edges[:, np.arange(n), list(pick)])
                    for pick in np.ndindex(*(2,) * n)], axis=1)  # (m, 2**n corners, n)
    return np.stack([pts.min(1), pts.max(1)], axis=-1)


def label_values(mask: np.ndarray) -> np.ndarray:
    if not np.issubdtype(mask.dtype, np.integer) and not np.issubdtype(mask.dtype, np.bool_):
        if not np.all(np.equal(np.mod(mask, 1), 0)):
            raise InputError("the mask has non-integer values; a label map holds integer labels")
    return np.unique(mask[mask > 0]).astype(int)


def measure(mask: Image | np.ndarray, affine: np.ndarray | None = None, *,
            label_names: dict[int, str] | None = None, labels: list[int] | None = None,
            max_components: int | None = None) -> list[LabelMeasurement]:
    """Measure every label of ``mask`` (an :class:`Image` with one channel, or a spatial array and
    its ``affine``). ``labels`` lists labels to report even if absent (size 0); components are
    listed largest first, at most ``max_components`` per label (all are counted)."""
    from scipy import ndimage

    if isinstance(mask, Image):
        if mask.channels != 1:
            raise InputError(f"a label map has one channel, this image has {mask.channels}", mask.meta.get("source"))
        affine, arr = mask.affine, mask.array[0]
    else:
        arr = np.asarray(mask)
        if affine is None:
            raise ValueError("measure(array) needs the image's affine; pass an Image to keep its geometry")
    affine = np.asarray(affine, dtype=np.float64)
    n = arr.ndim
    if affine.shape != (n + 1, n + 1):
        raise ValueError(f"affine {affine.shape} does not fit a {n}D mask")
    per_voxel = voxel_size_mm(affine)
    names = dict(label_names or {})
    wanted = sorted(set(label_values(arr).tolist()) | set(labels or []))
    out = []
    structure = ndimage.generate_binary_structure(n, n)
    for lab in wanted:
        binary = arr == lab
        comp, k = ndimage.label(binary, structure=structure)
        meas = LabelMeasurement(label=int(lab), name=names.get(int(lab), f"label_{lab}"), voxels=int(binary.sum()),
                                size_mm=round(int(binary.sum()) * per_voxel, 3), n_components=int(k))
        if k:
            counts = np.bincount(comp.ravel(), minlength=k + 1)[1:]
            order = np.argsort(-counts, kind="stable")[: max_components or k]
            # every listed component at once: one reply per component would cost minutes on a
            # fundus photograph whose lesions make thousands of components
            centroid = np.asarray(ndimage.center_of_mass(binary, comp, order + 1), dtype=np.float64).reshape(-1, n)
            slices = ndimage.find_objects(comp)
            lo = np.array([[s.start for s in slices[i]] for i in order]).reshape(-1, n)
            hi = np.array([[s.stop - 1 for s in slices[i]] for i in order]).reshape(-1, n)
            ras = _to_patient(affine, centroid)
            lps = (ras * [-1, -1, 1]).round(3).tolist() if n == 3 else [[]] * len(order)
            box = _bbox_patient(affine, lo, hi).round(3).tolist()
            sizes = (counts[order] * per_voxel).round(3).tolist()
            for rank, (i, c, r, p, a, b, bx, mm) in enumerate(zip(
                    order.tolist(), centroid.round(3).tolist(), ras.round(3).tolist(), lps, lo.tolist(), hi.tolist(),
                    box, sizes), start=1):
                meas.components.append(Component(
                    index=rank, voxels=int(counts[i]), size_mm=mm, centroid_voxel=c, centroid_ras_mm=r,
                    centroid_lps_mm=p, bbox_voxel=[[x, y] for x, y in zip(a, b)], bbox_ras_mm=bx))
        out.append(meas)
    return out


def unit(image: Image) -> str:
    """What a size of ``image``'s labels is counted in: "mm3" / "mm2" (or "um3", "m3"...), "voxels" /
    "pixels" where the file gave no voxel size (:attr:`Image.length_unit`)."""
    if image.length_unit is None:
        return "voxels" if image.spatial_dims == 3 else "pixels"
    return f"{image.length_unit}{image.spatial_dims}"


def to_dict(measurements: list[LabelMeasurement], image: Image) -> dict[str, Any]:
    # the fields copied by hand: dataclasses.asdict deep-copies every nested list (minutes for 10^5 components)
    return {"unit": unit(image),
            "labels": [{**vars(m), "components": [vars(c).copy() for c in m.components]} for m in measurements]}


CSV_FIELDS = ("label", "name", "component", "voxels", "size", "unit", "centroid_ras_mm", "centroid_lps_mm",
              "centroid_voxel", "bbox_voxel", "bbox_ras_mm")


def to_rows(measurements: list[LabelMeasurement], image: Image) -> list[dict[str, Any]]:
    """One row per label (component 0 = the whole label) and one per component."""
    u = unit(image)
    rows = []
    for m in measurements:
        rows.append({"label": m.label, "name": m.name, "component": 0, "voxels": m.voxels, "size": m.size_mm, "unit": u})
        for c in m.components:
            rows.append({"label": m.label, "name": m.name, "component": c.index, "voxels": c.voxels,
                         "size": c.size_mm, "unit": u,
                         "centroid_ras_mm": " ".join(map(str, c.centroid_ras_mm)),
                         "centroid_lps_mm": " ".join(map(str, c.centroid_lps_mm)),
                         "centroid_voxel": " ".join(map(str, c.centroid_voxel)),
                         "bbox_voxel": " ".join(f"{a}-{b}" for a, b in c.bbox_voxel),
                         "bbox_ras_mm": " ".join(f"{a}:{b}" for a, b in c.bbox_ras_mm)})
    return rows
