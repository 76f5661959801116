"""What ``medcnn predict`` is given, as the list of images to predict: files, DICOM series folders,
folders of images (searched recursively) and CSV lists of paths."""
from __future__ import annotations

import csv
from pathlib import Path

from medcnn.errors import InputError
from medcnn.io.dicom import dicom_identity, is_dicom_file
from medcnn.io.registry import image_suffix

PATH_COLUMNS = ("path", "file", "filename", "image", "image_path")
SKIP_NAMES = ("DICOMDIR",)


def _series_uid(p: Path) -> str:
    ident = dicom_identity(p)  # an unreadable file is reported when it is predicted
    return ident[2] if ident is not None else f"unreadable:{p}"


def is_image_file(p: Path) -> bool:
    """An image by its suffix, or a DICOM file by its content (DICOM files are often named without
    a suffix, or with a number as one); hidden files and DICOMDIR are not."""
    name = p.name.lower()
    if name.startswith(".") or name.upper() in SKIP_NAMES:
        return False
    return image_suffix(name) is not None or (not p.suffix or p.suffix[1:].isdigit()) and is_dicom_file(p)


def expand_folder(folder: Path) -> list[Path]:
    """A folder holding one DICOM series is one input; otherwise every image below it, a DICOM file
    each unless the DICOM files of one folder form a single series (then that folder)."""
    out: list[Path] = []
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.name.upper() not in SKIP_NAMES)
    dicoms = [p for p in files if is_dicom_file(p)]
    if dicoms and len(dicoms) > 1 and len({_series_uid(p) for p in dicoms}) == 1:
        out.append(folder)
        dicoms = []
    out += dicoms + [p for p in files if p not in dicoms and not is_dicom_file(p) and is_image_file(p)]
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        out += expand_folder(sub)
    return out


def read_path_list(csv_path: Path) -> list[Path]:
    """Paths listed in a CSV: the column named path / file / image (else the first one); relative
    paths are taken from the CSV's folder."""
    try:
        with open(csv_path, newline="") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"cannot read the list of inputs ({type(e).__name__})", csv_path) from None
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if not rows:
        raise InputError("the list of inputs is empty", csv_path)
    header = [c.strip().lower() for c in rows[0]]
    col = next((header.index(c) for c in PATH_COLUMNS if c in header), None)
    body = rows[1:] if col is not None else rows
    col = col or 0
    paths = []
    for i, r in enumerate(body, start=2 if body is not rows else 1):
        if len(r) <= col or not r[col].strip():
            raise InputError(f"line {i} has no path", csv_path)
        p = Path(r[col].strip()).expanduser()
        paths.append(p if p.is_absolute() else csv_path.parent / p)
    if not paths:
        raise InputError("the list of inputs holds no paths", csv_path)
    return paths


def expand_inputs(paths: list[Path]) -> list[Path]:
    """The images to predict, in order, each once."""
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_file() and p.suffix.lower() == ".csv":
            out += read_path_list(p)
        elif p.is_dir():
            found = expand_folder(p)
            if not found:
                raise InputError("no images found in this folder", p)
            out += found
        else:
            out.append(p)  # a missing or unreadable file is reported when it is read
    seen: set[Path] = set()
    return [p for p in out if not (p in seen or seen.add(p))]
