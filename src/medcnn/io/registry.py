"""Reader registry: pick a reader by suffix, else by the file's first bytes."""
from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

from medcnn.errors import InputError
from medcnn.io.image import Image

MAX_FILE_BYTES = 2 * 1024**3
"""Files larger than this are refused before decoding."""
MAX_PIXELS = 2**31
"""Images whose decoded sample count would exceed this are refused."""

Reader = Callable[[Path], Image]
_READERS: dict[str, Reader] = {}
_DIRECTORY_READER: list[Reader] = []

# (offset, magic, suffix) tried in order when the suffix is unknown
_MAGIC = [
    (128, b"DICM", ".dcm"),
    (344, b"n+1\0", ".nii"),
    (344, b"ni1\0", ".nii"),
    (4, b"n+2\0", ".nii"),
    (0, b"\x89PNG\r\n\x1a\n", ".png"),
    (0, b"\xff\xd8\xff", ".jpg"),
    (0, b"GIF87a", ".gif"),
    (0, b"GIF89a", ".gif"),
    (0, b"II*\0", ".tif"),
    (0, b"MM\0*", ".tif"),
    (0, b"II+\0", ".tif"),
    (0, b"MM\0+", ".tif"),
    (0, b"BM", ".bmp"),
]


def register_reader(suffixes: str | Iterable[str], func: Reader) -> Reader:
    """Read files ending in ``suffixes`` (e.g. ``".mha"``) with ``func(path) -> Image``.

    Replaces any reader already registered for those suffixes; returns ``func``.
    """
    if isinstance(suffixes, str):
        suffixes = [suffixes]
    for s in suffixes:
        s = s.lower().strip()
        _READERS[s if s.startswith(".") else "." + s] = func
    return func


def supported_suffixes() -> list[str]:
    """The suffixes :func:`read_image` dispatches on, sorted."""
    return sorted(_READERS)


def image_suffixes() -> tuple[str, ...]:
    """The registered suffixes, longest first (``.nii.gz`` before ``.gz``): match a name against
    them in this order to find (or strip) its image suffix."""
    return tuple(sorted(_READERS, key=lambda s: (-len(s), s)))


def image_suffix(name: str | os.PathLike) -> str | None:
    """The longest registered suffix the file name ends with (any case), or None."""
    name = Path(name).name.lower()
    return next((s for s in image_suffixes() if name.endswith(s)), None)


def set_directory_reader(func: Reader) -> None:
    """Set the reader used when :func:`read_image` is given a folder."""
    _DIRECTORY_READER[:] = [func]


def check_file(path: Path) -> int:
    """Raise InputError unless ``path`` is a readable, non-empty file under the size limit."""
    if not path.exists():
        raise InputError("file not found", path)
    if not path.is_file():
        raise InputError("not a regular file", path)
    size = path.stat().st_size
    if size == 0:
        raise InputError("empty file (0 bytes)", path)
    if size > MAX_FILE_BYTES:
        raise InputError(
            f"file is {size / 2**30:.1f} GiB, over the {MAX_FILE_BYTES / 2**30:.1f} GiB limit "
            "(medcnn.io.registry.MAX_FILE_BYTES)", path)
    return size


def check_pixels(count: int, shape_text: str, path: Path) -> None:
    """Raise InputError if an image of ``count`` samples would be too large to decode: over
    MAX_PIXELS, or more than the memory available now (at 4 bytes a sample, as float32)."""
    if count > MAX_PIXELS:
        raise InputError(f"image too large to decode ({shape_text} = {count} samples, "
                         f"limit {MAX_PIXELS})", path)
    free = _available_bytes()
    if free is not None and 4 * count > free:
        raise InputError(f"image too large for the memory available ({shape_text} = {count} samples need "
                         f"{4 * count / 2**30:.1f} GiB as float32; {free / 2**30:.1f} GiB available)", path)


def _available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), else None."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def one_line(exc: BaseException, limit: int = 200) -> str:
    """A library exception as a short one-line text, for InputError messages."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _suffix_reader(path: Path) -> Reader | None:
    name = path.name.lower()
    matches = [s for s in _READERS if name.endswith(s) and len(name) > len(s)]
    return _READERS[max(matches, key=len)] if matches else None


def sniff(path: Path) -> str | None:
    """The suffix key matching the file's content (magic bytes), or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(548)
    except OSError as e:
        raise InputError(f"cannot open file ({e.strerror or one_line(e)})", path) from None
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as f:
                inner = f.read(548)
        except (OSError, EOFError, zlib.error):  # not gzip after all, or a corrupt stream
            return None
        return ".nii.gz" if any(inner[o:o + len(m)] == m for o, m, s in _MAGIC if s == ".nii") else None
    for offset, magic, suffix in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return suffix
    return None


def read_image(path: str | os.PathLike) -> Image:
    """Read one image file, or a folder holding one DICOM series, as an :class:`Image`."""
    path = Path(path).expanduser()
    if path.is_dir():
        if not _DIRECTORY_READER:
            raise InputError("reading a folder is not supported", path)
        try:
            image = _DIRECTORY_READER[0](path)
        except MemoryError:
            raise InputError("not enough memory to read this series", path) from None
        return _check_result(image, path)
    check_file(path)
    reader = _suffix_reader(path)
    if reader is None:
        key = sniff(path)
        if key is None and (path.suffix == "" or path.suffix[1:].isdigit()):
            key = ".dcm"  # DICOM files are often named without (or with a numeric) suffix
        reader = _READERS.get(key) if key else None
    if reader is None:
        raise InputError(f"unsupported file type {path.suffix!r}; supported suffixes: "
                         f"{', '.join(supported_suffixes())}", path)
    try:
        image = reader(path)
    except MemoryError:  # a size the checks let through and the allocator refused
        raise InputError("not enough memory to decode this image", path) from None
    return _check_result(image, path)


def _check_result(image: object, path: Path) -> Image:
    import numpy as np

    if not isinstance(image, Image):
        raise TypeError(f"reader for {path} returned {type(image).__name__}, not medcnn Image")
    if not np.isfinite(image.affine).all() or abs(np.linalg.det(image.affine[:-1, :-1])) < 1e-12:
        raise InputError("the voxel-to-world geometry (affine) is degenerate or not finite; the file's "
                         "spacing/orientation fields are broken", path)
    a = image.array
    if a.dtype.kind in "fc":
        bad = a.size - int(np.count_nonzero(np.isfinite(a)))
        if bad:
            raise InputError(f"{bad} of {a.size} values are NaN or infinite; medcnn needs finite intensities "
                             "(replace them, e.g. with 0, before use)", path)
    return image
