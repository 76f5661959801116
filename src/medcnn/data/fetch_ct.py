"""A real head CT for enhancement: the example project of Debian's ``invesalius-examples``.

The package (checksummed) holds ``Cranium.inv3``: a gzipped tar with the volume as raw int16 HU
(``matrix.dat``, 108 slices of 256 x 256) and its shape and spacing (``main.plist``). It is
converted once to ``<root>/invesalius_ct/cranium_ct.nii.gz`` (HU, 0.957 x 0.957 x 1.5 mm).
A ``.deb`` is an ``ar`` archive, read here without dpkg.
"""
from __future__ import annotations

import io
import plistlib
import tarfile
from pathlib import Path

import numpy as np

from medcnn.data import catalog
from medcnn.errors import InputError
from medcnn.utils.files import atomic_path


def ar_members(path: Path) -> dict[str, bytes]:
    """The members of a Unix ``ar`` archive (a Debian package)."""
    data = path.read_bytes()
    if not data.startswith(b"!<arch>\n"):
        raise InputError("not a Debian package (no ar header)", path)
    out, pos = {}, 8
    while pos + 60 <= len(data):
        header = data[pos:pos + 60]
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError:
            raise InputError("corrupt ar member header", path) from None
        pos += 60
        out[name] = data[pos:pos + size]
        pos += size + (size % 2)
    return out


def inv3_volume(inv3: bytes, source: Path) -> tuple[np.ndarray, tuple[float, float, float], str]:
    """(z, y, x) int16 HU volume, spacing (x, y, z) in mm and modality of an InVesalius project."""
    with tarfile.open(fileobj=io.BytesIO(inv3), mode="r:gz") as tar:
        files = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
        if "main.plist" not in files or "matrix.dat" not in files:
            raise InputError("InVesalius project without main.plist / matrix.dat", source)
        meta = plistlib.loads(tar.extractfile(files["main.plist"]).read())
        raw = tar.extractfile(files["matrix.dat"]).read()
    shape = tuple(int(v) for v in meta["matrix"]["shape"])
    dtype = np.dtype(meta["matrix"]["dtype"])
    if len(raw) != int(np.prod(shape)) * dtype.itemsize:
        raise InputError(f"matrix.dat holds {len(raw)} bytes, not a {shape} {dtype} volume", source)
    vol = np.frombuffer(raw, dtype=dtype).reshape(shape)
    return vol, tuple(float(v) for v in meta["spacing"]), str(meta.get("modality", ""))


def package_to_nifti(deb: Path, nifti: Path) -> None:
    """Write the head CT of the (verified) ``invesalius-examples`` package ``deb`` to ``nifti``."""
    import nibabel as nib

    info = catalog.INVESALIUS_CT
    members = ar_members(deb)
    data_name = next((n for n in members if n.startswith("data.tar")), None)
    if data_name is None:
        raise InputError("the package has no data.tar member", deb)
    with tarfile.open(fileobj=io.BytesIO(members[data_name]), mode="r:*") as tar:
        member = next((m for m in tar.getmembers() if m.name.lstrip("./") == info["member"]), None)
        if member is None:
            raise InputError(f"the package has no {info['member']}", deb)
        inv3 = tar.extractfile(member).read()
    vol, (sx, sy, sz), modality = inv3_volume(inv3, deb)
    if modality.upper() != "CT":
        raise InputError(f"expected a CT project, found modality {modality!r}", deb)
    arr = np.ascontiguousarray(np.transpose(vol, (2, 1, 0)))  # (z, y, x) -> NIfTI (i, j, k)
    img = nib.Nifti1Image(arr, np.diag([sx, sy, sz, 1.0]))
    img.header.set_xyzt_units("mm")
    img.header["descrip"] = b"CT HU invesalius-examples Cranium"
    with atomic_path(nifti) as tmp:
        nib.save(img, str(tmp.with_suffix(".nii.gz")))
        tmp.with_suffix(".nii.gz").replace(tmp)
