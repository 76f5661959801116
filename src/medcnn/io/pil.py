"""2D images: PNG/JPEG/BMP/GIF via Pillow, TIFF via tifffile (Pillow as fallback).

Arrays are (C, rows, cols) in the file's dtype (uint8, uint16...): C=1 grayscale (also an RGB
file whose channels are equal), C=3 RGB; alpha is dropped. Spacing is 1.0 (resolution tags are ignored).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from medcnn.errors import InputError, MedcnnError
from medcnn.io.image import Image
from medcnn.utils.files import atomic_path

from .registry import MAX_PIXELS, check_pixels, one_line

_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".bmp": "bmp", ".gif": "gif",
            ".tif": "tiff", ".tiff": "tiff"}


GREY_TOLERANCE = 1
"""An RGB image whose three channels differ nowhere by more than this is a grey image saved as colour
(common for X-ray and ultrasound exports): it is read as one channel, so it is planned, normalised and
checked against a model's training domain as the grey image it is."""


def _is_grey_rgb(arr: np.ndarray, rows: int = 256) -> bool:
    """Whether an RGB array's channels agree everywhere (a sparse sample first, so a colour photograph
    is told in microseconds; then blocks of ``rows`` rows, so a large grey image needs no full copy)."""
    if arr.ndim != 3 or arr.shape[0] != 3:
        return False

    def close(block: np.ndarray) -> bool:
        b = block.astype(np.int64) if block.dtype.kind in "ui" else block
        return bool(np.abs(b[0] - b[1]).max(initial=0) <= GREY_TOLERANCE
                    and np.abs(b[1] - b[2]).max(initial=0) <= GREY_TOLERANCE)

    return close(arr[:, ::16, ::16]) and all(close(arr[:, r:r + rows]) for r in range(0, arr.shape[1], rows))


def _image(arr: np.ndarray, path: Path, fmt: str) -> Image:
    if arr.dtype.byteorder not in "=|":
        arr = arr.astype(arr.dtype.newbyteorder("="))
    meta = {"format": fmt, "modality": None, "source": path.name, "spatial_unit": "unknown"}  # pixels, not mm
    if _is_grey_rgb(arr):
        arr, meta["grey_saved_as_rgb"] = arr[1:2], True
    return Image.from_spacing(np.ascontiguousarray(arr), meta=meta)


def _fmt(path: Path, fallback: str) -> str:
    return next((f for s, f in _FORMATS.items() if path.name.lower().endswith(s)), fallback)


def _pil_array(im) -> np.ndarray:
    """A Pillow image as (C, rows, cols), modes mapped to grayscale or RGB."""
    mode = im.mode
    if mode in ("P", "PA"):  # palette: grayscale if the palette is gray, else RGB
        rgb = np.asarray(im.convert("RGB"))
        gray = (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
        return rgb[None, ..., 0] if gray else rgb.transpose(2, 0, 1)
    if mode in ("1", "LA", "La"):
        im, mode = im.convert("L"), "L"  # bilevel -> 0/255
    if mode in ("L", "I", "F") or mode.startswith("I;16"):
        return np.asarray(im)[None]
    if mode != "RGB":
        im = im.convert("RGB")  # RGBA, CMYK, YCbCr, LAB, HSV...
    return np.asarray(im).transpose(2, 0, 1)


def read_pil(path: Path) -> Image:
    """PNG, JPEG, BMP, GIF (and any single-frame image Pillow opens)."""
    from PIL import Image as PILImage

    PILImage.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(path) as im:
                w, h = im.size
                check_pixels(w * h * len(im.getbands()), f"{w} x {h} x {len(im.getbands())}", path)
                frames = getattr(im, "n_frames", 1)
                if frames > 1:
                    raise InputError(f"multi-frame image ({frames} frames) is not supported; "
                                     "save one image per file", path)
                im.load()
                arr = _pil_array(im)
            fmt = (im.format or "").lower() or _fmt(path, "image")
    except (MedcnnError, MemoryError):
        raise
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as e:
        raise InputError(f"image too large to decode ({one_line(e)})", path) from None
    except PILImage.UnidentifiedImageError:
        raise InputError(f"not a valid {_fmt(path, 'image').upper()} file (Pillow cannot identify it)",
                         path) from None
    except Exception as e:
        raise InputError(f"corrupt or truncated image ({one_line(e)})", path) from None
    return _image(arr, path, "jpeg" if fmt == "mpo" else fmt)


def _tiff_array(tif, path: Path) -> np.ndarray:
    """The first series of a TIFF as (C, rows, cols), or ValueError if not a 2D image."""
    series = tif.series[0]
    page = series.pages[0] if series.pages else tif.pages[0]
    axes = "".join(a for a, n in zip(series.axes, series.shape) if n > 1 or a in "YX")
    check_pixels(int(np.prod(series.shape, dtype=np.int64)), " x ".join(map(str, series.shape)), path)
    arr = series.asarray().reshape([n for a, n in zip(series.axes, series.shape) if n > 1 or a in "YX"])
    if axes == "YX":
        arr = arr[None]
    elif axes == "YXS":
        arr = arr.transpose(2, 0, 1)
    elif axes not in ("SYX", "CYX"):
        raise InputError(f"TIFF with axes {series.axes} {series.shape} is not a single 2D image; "
                         "save one image per file", path)
    photometric = int(page.photometric)
    if photometric == 3 and page.colormap is not None:  # PALETTE
        cmap = page.colormap
        arr = (cmap[:, arr[0]] >> 8 if cmap.max() > 255 else cmap[:, arr[0]]).astype(np.uint8)
    elif photometric == 0 and arr.dtype.kind in "ui":  # MINISWHITE -> MINISBLACK
        arr = np.iinfo(arr.dtype).max - arr
    if photometric in (0, 1) and arr.shape[0] == 2:
        arr = arr[:1]  # gray + alpha
    elif photometric == 2 and arr.shape[0] > 3:
        arr = arr[:3]  # RGB + alpha / extra samples
    return arr


def read_tiff(path: Path) -> Image:
    """A single-image TIFF (gray, RGB, palette); multi-page stacks are refused."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            arr = _tiff_array(tif, path)
    except (MedcnnError, MemoryError):
        raise
    except Exception as e:
        if "imagecodecs" in str(e):  # compression tifffile cannot decode alone: try Pillow
            try:
                return read_pil(path)
            except InputError:
                raise InputError(f"cannot decode TIFF ({one_line(e)}; pip install imagecodecs)", path) from None
        raise InputError(f"corrupt or unreadable TIFF ({one_line(e)})", path) from None
    return _image(arr, path, "tiff")


def write_png_mask(label: Image, path: Path) -> Path:
    """A 2D label map as an 8-bit PNG; a binary map is written 0/255 so image viewers show it."""
    from PIL import Image as PILImage

    arr = np.asarray(label.array[0])
    if arr.max(initial=0) > 255 or arr.min(initial=0) < 0:
        raise InputError("label values outside 0..255 do not fit an 8-bit PNG; write NIfTI instead", path)
    out = (arr > 0).astype(np.uint8) * 255 if arr.max(initial=0) <= 1 else arr.astype(np.uint8)
    with atomic_path(path) as tmp:
        PILImage.fromarray(out).save(tmp, format="PNG")
    return Path(path)
