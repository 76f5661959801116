"""Clean-enough images for enhancement: every readable image under a folder, as 2D slices in
physical units (HU for CT), split by source so a held-out scan never lends a slice to training.

A *source* is one image file (PNG, NIfTI, a DICOM file) or one DICOM series folder. Volumes are
cut into slices along their last spatial axis (the slice axis of NIfTI and DICOM series arrays).
Label and mask folders of the segmentation layouts (``labelsTr``, ``1st_manual``, ``mask`` ...) are
skipped: they are not images to restore.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medcnn.errors import InputError
from medcnn.io import image_suffix, read_image
from medcnn.io.image import Image

SKIP_DIRS = {"labelstr", "labelsts", "labels", "masks", "mask", "1st_manual", "2nd_manual", "manual",
             "annotations", "fov", "roi"}
MAX_SOURCES = 100_000
CHANNEL_FILE = re.compile(r"^(.*)_\d{4}\.[^/]+$")  # nnU-Net: CASE_0000.nii.gz is channel 0 of CASE


@dataclass
class Source:
    id: str  # path relative to the dataset folder (file names are the user's own; nothing read from tags)
    path: Path
    kind: str  # "file" | "series"


@dataclass
class EnhanceData:
    root: Path
    sources: list[Source]
    _cache: dict[str, Image] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def source(self) -> str:
        return str(self.root)

    def image(self, source_id: str) -> Image:
        if source_id not in self._cache:
            src = next(s for s in self.sources if s.id == source_id)
            img = read_image(src.path)
            self._cache[source_id] = img
        return self._cache[source_id]

    def n_slices(self, source_id: str) -> int:
        a = self.image(source_id).array
        return 1 if a.ndim == 3 else int(a.shape[-1])

    def slices(self, source_id: str, channels: int | None = None) -> list[np.ndarray]:
        """(C, H, W) float32 slices of one source in physical units; ``channels`` checks the count."""
        img = self.image(source_id)
        if channels is not None and img.channels != channels:
            raise InputError(f"has {img.channels} channel(s); this plan expects {channels} "
                             f"({'grayscale' if channels == 1 else 'colour'} images)", self._path(source_id))
        a = np.asarray(img.array, dtype=np.float32)
        if a.ndim == 3:
            return [a]
        if a.ndim == 4:
            return [np.ascontiguousarray(a[..., k]) for k in range(a.shape[-1])]
        raise InputError(f"{a.ndim - 1}-D images are not supported for enhancement", self._path(source_id))

    def _path(self, source_id: str) -> Path:
        return next(s.path for s in self.sources if s.id == source_id)


def _is_dicom_series_dir(folder: Path, files: list[str]) -> bool:
    dicom = [f for f in files if f.lower().endswith((".dcm", ".dicom")) or "." not in f]
    return len(dicom) >= 2


def find_sources(root: Path) -> list[Source]:
    """Image files and DICOM series folders under ``root`` (sorted; label/mask folders skipped)."""
    root = Path(root)
    if root.is_file():
        return [Source(root.name, root, "file")]
    if not root.is_dir():
        raise InputError("no such file or folder", root)
    out: list[Source] = []
    for dirpath, dirnames, files in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d.lower() not in SKIP_DIRS and not d.startswith("."))
        folder = Path(dirpath)
        files = sorted(f for f in files if not f.startswith("."))
        if _is_dicom_series_dir(folder, files):
            out.append(Source(str(folder.relative_to(root)) or ".", folder, "series"))
            files = [f for f in files if not (f.lower().endswith((".dcm", ".dicom")) or "." not in f)]
        for f in files:
            if image_suffix(f) is not None:
                p = folder / f
                out.append(Source(str(p.relative_to(root)), p, "file"))
        if len(out) > MAX_SOURCES:
            raise InputError(f"more than {MAX_SOURCES} images; point at a smaller folder", root)
    if not out:
        raise InputError("no images found (DICOM, NIfTI, PNG/JPEG/TIFF)", root)
    return out


def load_enhance(path: str | os.PathLike) -> EnhanceData:
    """The images under a folder (or one file), or under a folder of the data root named bare."""
    from medcnn.data.fetch import in_data_root

    root = in_data_root(path)
    return EnhanceData(root, find_sources(root))


def source_group(src: Source) -> str:
    """The patient a source belongs to, so a split keeps a patient's scans together: the DICOM patient
    (hashed, else study, else series), else the case of nnU-Net channel files (``CASE_0000.nii.gz``,
    ``CASE_0001.nii.gz``: one patient's sequences), else the source itself."""
    from medcnn.data.groups import dicom_group

    if src.kind == "series" or src.path.suffix.lower() in (".dcm", ".dicom", ""):
        g = dicom_group(src.path)
        if g is not None:
            return g
    case = CHANNEL_FILE.match(src.id)
    return case.group(1) if case else src.id


def split_sources(ids: list[str], *, test_fraction: float = 0.2, val_fraction: float = 0.1,
                  seed: int = 0, groups: list[str] | None = None) -> dict[str, list[str]]:
    """A seeded split of the sources that keeps each group (patient, :func:`source_group`) in one
    part; ``test_fraction`` 0 leaves the test part empty (the test images live elsewhere). With fewer
    than 3 groups every split gets the same ids and :func:`slab_split` divides their slices instead."""
    groups = list(ids) if groups is None else list(groups)
    members: dict[str, list[str]] = {}
    for i, g in zip(ids, groups):
        members.setdefault(g, []).append(i)
    keys = list(members)
    if len(keys) < 3:
        return {"train": list(ids), "val": list(ids), "test": list(ids), "by": "slab"}
    rng = np.random.default_rng(seed)
    order = [keys[i] for i in rng.permutation(len(keys))]
    n_test = 0 if test_fraction <= 0 else max(1, int(round(len(order) * test_fraction)))
    n_val = max(1, int(round(len(order) * val_fraction)))
    parts = {"test": order[:n_test], "val": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}
    if not parts["train"]:
        raise InputError(f"{len(ids)} images are too few for a train / val / test split")
    out = {k: sorted(i for g in v for i in members[g]) for k, v in parts.items()}
    return {"train": out["train"], "val": out["val"], "test": out["test"],
            "by": "source" if len(keys) == len(ids) else "patient"}


def slab_split(n_slices: int, part: str, test_fraction: float = 0.2, val_fraction: float = 0.1,
               gap: int = 2) -> range:
    """Slices of one volume for ``part`` when sources cannot be split: contiguous slabs
    (train | val | test along the slice axis) with ``gap`` slices left out between them, so
    neighbouring, nearly identical slices never sit on both sides."""
    n_test = max(1, int(round(n_slices * test_fraction)))
    n_val = max(1, int(round(n_slices * val_fraction)))
    test0 = n_slices - n_test
    val0 = test0 - gap - n_val
    if val0 - gap < 1:
        raise InputError(f"{n_slices} slices are too few for a train / val / test split")
    return {"train": range(0, val0 - gap), "val": range(val0, test0 - gap), "test": range(test0, n_slices)}[part]
