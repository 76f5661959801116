"""NIfTI (.nii, .nii.gz) via nibabel: voxel order as stored, affine as the file gives it."""
from __future__ import annotations

import gzip
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from medcnn.errors import InputError, MedcnnError
from medcnn.io.image import Image
from medcnn.utils.files import atomic_path

from .registry import check_pixels, one_line


def _load(path: Path, stack: ExitStack):
    """nibabel image; files without a .nii/.nii.gz name are opened by content."""
    import nibabel as nib
    from nibabel.fileholders import FileHolder

    if path.name.lower().endswith((".nii", ".nii.gz")):
        return nib.load(str(path))
    f = stack.enter_context(open(path, "rb"))
    if f.read(2) == b"\x1f\x8b":
        f = stack.enter_context(gzip.open(path, "rb"))
    f.seek(0)
    head = f.read(4)
    f.seek(0)
    nifti2 = 540 in (int.from_bytes(head, "little"), int.from_bytes(head, "big"))
    holder = FileHolder(fileobj=f)
    return (nib.Nifti2Image if nifti2 else nib.Nifti1Image).from_file_map({"header": holder, "image": holder})


def read_nifti(path: Path) -> Image:
    """3D -> (1, i, j, k); 4D -> (t, i, j, k) (last axis as channels); 2D -> (1, i, j).

    Integer data without scaling keeps its dtype (label maps); anything else is float32.
    """
    import nibabel as nib

    with ExitStack() as stack:
        try:
            img = _load(path, stack)
            shape, affine = tuple(int(s) for s in img.shape), getattr(img, "affine", None)
        except (MedcnnError, MemoryError):
            raise
        except Exception as e:
            raise InputError(f"not a readable NIfTI file ({one_line(e)})", path) from None
        if affine is None or not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
            raise InputError(f"not a spatial NIfTI image ({type(img).__name__})", path)
        if len(shape) == 5 and shape[3] == 1:  # e.g. vector fields stored as (i, j, k, 1, c)
            shape = shape[:3] + shape[4:]
        if len(shape) not in (2, 3, 4):
            raise InputError(f"unsupported NIfTI shape {shape}: expected 2, 3 or 4 dimensions", path)
        check_pixels(int(np.prod(shape, dtype=np.int64)), " x ".join(map(str, shape)), path)
        try:
            data = np.asanyarray(img.dataobj).reshape(shape)  # applies scl_slope/inter if set
        except (MedcnnError, MemoryError):
            raise
        except Exception as e:
            raise InputError(f"corrupt or truncated NIfTI data ({one_line(e)})", path) from None
    if data.dtype.kind in "iub":
        data = data.astype(data.dtype.newbyteorder("="), copy=False)
    else:
        data = data.astype(np.float32, copy=False)
    if len(shape) == 2:
        arr, affine = data[None], affine[np.ix_([0, 1, 3], [0, 1, 3])]
    elif len(shape) == 3:
        arr = data[None]
    else:
        arr = np.moveaxis(data, -1, 0)
    hdr = img.header
    meta = {"format": "nifti", "modality": None, "source": path.name,
            "qform_code": int(hdr["qform_code"]), "sform_code": int(hdr["sform_code"]),
            "spatial_unit": hdr.get_xyzt_units()[0]}  # "unknown" where the writer did not say (mm, micron, meter)
    return Image(np.ascontiguousarray(arr), affine, meta)


def write_nifti(image: Image, path: str | Path) -> Path:
    """Write ``image`` (one channel, or several as a 4th axis) with its affine; atomically.

    2D images become a one-slice volume (the affine gains a 1 mm third axis); ``.nii.gz`` is
    gzip-compressed. Label maps keep their integer type.
    """
    import nibabel as nib

    path = Path(path)
    arr = image.array
    n = image.spatial_dims
    aff = np.eye(4)
    if n == 3:
        aff = image.affine
    else:  # (row, col) axes -> i, j; a unit k axis
        aff[:2, :2], aff[:2, 3] = image.affine[:2, :2], image.affine[:2, 2]
    data = arr[0] if arr.shape[0] == 1 else np.moveaxis(arr, 0, -1)
    if n == 2:
        data = data[:, :, None] if arr.shape[0] == 1 else data[:, :, None, :]
    img = nib.Nifti1Image(np.ascontiguousarray(data), aff)
    img.header.set_xyzt_units({"um": "micron", "m": "meter", None: "unknown"}.get(image.length_unit, "mm"))
    raw = img.to_bytes()
    with atomic_path(path) as tmp:
        if path.name.lower().endswith(".gz"):
            with gzip.open(tmp, "wb", compresslevel=6) as f:
                f.write(raw)
        else:
            tmp.write_bytes(raw)
    return path
