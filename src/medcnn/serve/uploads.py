"""An uploaded file, stored where the readers can take it: its type decided by its content (magic bytes),
never by its name; the name the client sent is never used as a path.

A ZIP upload is a DICOM series (or a single image), or for a model of several channels given one
file each, the case's channel files named as nnU-Net names them (``CASE_0000.nii.gz`` ...: the names
are read only for the channel number). Members are written under generated names (``0001.dcm``,
``case_0000.nii.gz`` ...), with limits on their number and unpacked size (no zip bombs, no ``../``
paths).
"""
from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

from medcnn.errors import InputError
from medcnn.io.channels import CHANNEL_FILE
from medcnn.io.registry import image_suffix, sniff

MAX_ZIP_MEMBERS = 4096
MAX_UNPACKED_BYTES = 2 * 1024**3
TYPES = {".dcm": "DICOM", ".nii": "NIfTI", ".nii.gz": "NIfTI", ".png": "PNG", ".jpg": "JPEG", ".tif": "TIFF",
         ".gif": "GIF", ".bmp": "BMP"}


def _headerless_dicom(path: Path) -> bool:
    """A DICOM file without the 128-byte preamble and 'DICM' (older exports): it must parse as DICOM
    and name its SOP class."""
    import pydicom

    try:
        return "SOPClassUID" in pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception:  # noqa: BLE001 - anything unparsable is simply not DICOM
        return False


def _kind(path: Path) -> str | None:
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04":
        return ".zip"
    return sniff(path) or (".dcm" if _headerless_dicom(path) else None)


def _unzip(archive: Path, folder: Path, channels: int = 1) -> Path:
    """Members of a ZIP into ``folder`` under generated names; the one image, the folder of a series,
    or (``channels`` > 1) the first of a case's channel files."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError):
        raise InputError("not a readable ZIP archive") from None
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir() and not Path(m.filename).name.startswith(".")
                   and "__MACOSX" not in m.filename and Path(m.filename).name.upper() != "DICOMDIR"]
        if not members:
            raise InputError("the ZIP archive holds no files")
        if len(members) > MAX_ZIP_MEMBERS:
            raise InputError(f"the ZIP archive holds {len(members)} files (at most {MAX_ZIP_MEMBERS})")
        if sum(m.file_size for m in members) > MAX_UNPACKED_BYTES:
            raise InputError(f"the ZIP archive unpacks to more than {MAX_UNPACKED_BYTES / 2**30:.0f} GiB")
        folder.mkdir()
        written = 0
        names = {}  # generated name -> the member's own file name (read for a channel number only)
        for i, m in enumerate(members, start=1):
            names[f"{i:04d}"] = Path(m.filename).name
            target = folder / f"{i:04d}"
            with zf.open(m) as src, open(target, "wb") as dst:
                while chunk := src.read(1 << 20):  # counts real bytes: the sizes in the header can lie
                    written += len(chunk)
                    if written > MAX_UNPACKED_BYTES:
                        raise InputError("the ZIP archive unpacks to more than its stated size")
                    dst.write(chunk)
    files = sorted(folder.iterdir())
    kinds = {f: _kind(f) for f in files}
    images = [f for f, k in kinds.items() if k and k != ".zip"]
    if not images:
        raise InputError("the ZIP archive holds no DICOM, NIfTI or image file")
    if all(kinds[f] == ".dcm" for f in images) and len(images) > 1:
        for f in files:
            if f not in images:
                f.unlink()
            else:
                f.rename(f.with_suffix(".dcm"))
        return folder
    if len(images) > 1:
        if channels > 1:
            return _channel_files(images, kinds, names, channels)
        raise InputError("the ZIP archive holds several images; upload a DICOM series or one image per request")
    return images[0].rename(images[0].with_name("image" + kinds[images[0]]))


def _channel_files(images: list[Path], kinds: dict, names: dict[str, str], channels: int) -> Path:
    """A case's channel files, one per channel, renamed case_0000 ...: the first of them."""
    expected = ", ".join(f"CASE_{k:04d}" for k in range(channels))
    number = {}
    for f in images:
        own = names[f.name]
        m = CHANNEL_FILE.match(own[: len(own) - len(image_suffix(own) or "")])
        if m is None:
            raise InputError(f"the ZIP archive holds several images: for this model of {channels} channels, one "
                             f"file each, name them {expected} (its channel order); else upload one image")
        number[f] = int(m["k"])
    if sorted(number.values()) != list(range(channels)):
        raise InputError(f"the ZIP archive's channel files are numbered {sorted(number.values())}; this model "
                         f"takes {channels} channels, one file each: {expected}")
    renamed = {k: f.rename(f.with_name(f"case_{k:04d}{kinds[f]}")) for f, k in number.items()}
    return renamed[0]


def store_upload(raw: Path, folder: Path, channels: int = 1) -> tuple[Path, str]:
    """(path the readers take, type name) for the uploaded bytes in ``raw``; files go into ``folder``.
    ``channels``: what the model takes (a ZIP may then hold a case's channel files)."""
    if raw.stat().st_size == 0:
        raise InputError("empty upload (0 bytes)")
    kind = _kind(raw)
    if kind == ".zip":
        path = _unzip(raw, folder / "series", channels)
        raw.unlink()
        if path.is_dir():
            return path, "DICOM series"
        many = path.name.startswith("case_0000")
        return path, TYPES[_kind(path)] + (f", {channels} channel files (zipped)" if many else " (zipped)")
    if kind is None:
        raise InputError("unrecognised file type: upload DICOM (a file or a ZIP of a series), NIfTI, PNG, "
                         "JPEG, TIFF or BMP")
    path = folder / ("image" + kind)
    shutil.move(raw, path)
    return path, TYPES[kind]
