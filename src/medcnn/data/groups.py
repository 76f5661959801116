"""Who an image belongs to, so that a split never divides one patient, and what two splits share.

A *group* is the unit a split keeps whole: a patient when the data says so. Samples of one group
always land in the same split, so no patient is trained on and tested on. Where the group comes
from, first match wins:

1. an explicit ``group`` (CSV column, or a caller's list);
2. DICOM headers: PatientID, else StudyInstanceUID, else SeriesInstanceUID;
3. a sub-folder per case inside a class folder (``CLASS/CASE/*.png``);
4. the file itself.

Groups read from DICOM headers are recorded as a short hash (``patient-3fa2c1d9e0ab``): split
files and logs never carry a patient identifier.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medcnn.errors import InputError


def hashed(kind: str, value: str) -> str:
    """``kind-<12 hex>``: a stable stand-in for an identifier that must not be written out."""
    return f"{kind}-{hashlib.sha256(f'{kind}:{value}'.encode()).hexdigest()[:12]}"


def dicom_group(path: Path) -> str | None:
    """The patient (else study, else series) of a DICOM file or series folder, hashed; None when
    the path is not DICOM or names none of them."""
    from medcnn.io.dicom import dicom_identity

    ident = dicom_identity(path)
    if ident is None:
        return None
    for kind, value in zip(("patient", "study", "series"), ident):
        if value:
            return hashed(kind, value)
    return None


def group_of(path: str | Path, class_dir: Path | None = None) -> str:
    """The group of one image file (or DICOM series folder) without an explicit group."""
    path = Path(path)
    g = dicom_group(path)
    if g is not None:
        return g
    if class_dir is not None:
        rel = path.relative_to(class_dir)
        if len(rel.parts) > 1:  # CLASS/CASE/...: the case folder
            return f"{class_dir.name}/{rel.parts[0]}"
    return str(path)


def stratified_group_split(labels: Sequence[int], groups: Sequence[str], seed: int,
                           fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)) -> list[str]:
    """A seeded train/val/test split (MedMNIST's 70/10/20) that keeps every group in one split.

    Groups are stratified by their most common label; within a class, shuffled groups fill val,
    then test, up to those splits' share of the class's images (at least one group each when the
    class has three or more groups). With one image per group this is a plain per-class split.
    """
    if len(labels) != len(groups):
        raise ValueError("labels and groups differ in length")
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    names = list(members)  # in order of first appearance
    label_of = {g: Counter(labels[i] for i in members[g]).most_common(1)[0][0] for g in names}
    rng = np.random.default_rng(seed)
    out = [""] * len(labels)
    for c in sorted(set(label_of.values())):
        chosen = [g for g in names if label_of[g] == c]
        rng.shuffle(chosen)
        n_images = sum(len(members[g]) for g in chosen)
        few = len(chosen) < 3
        want = {"val": 0 if few else max(1, round(fractions[1] * n_images)),
                "test": 0 if few else max(1, round(fractions[2] * n_images))}
        got = {"val": 0, "test": 0}
        for g in chosen:
            split = next((s for s in ("val", "test") if got[s] < want[s]), "train")
            if split != "train":
                got[split] += len(members[g])
            for i in members[g]:
                out[i] = split
    return out


def check_groups_within_splits(groups: Sequence[str], splits: Sequence[str], source: str | Path) -> None:
    """Refuse a given split that puts one group (patient) in two splits."""
    seen: dict[str, str] = {}
    for g, s in zip(groups, splits):
        if seen.setdefault(g, s) != s:
            what = "patient" if g.startswith(("patient-", "study-", "series-")) else "group"
            raise InputError(f"{what} {g!r} has images in both {seen[g]} and {s}; a patient must stay in one "
                             "split (fix the split column/folders, or drop the split to let medcnn split by group)",
                             source)


def duplicates_across_splits(images: dict[str, np.ndarray]) -> dict[str, int]:
    """Pixel-identical images shared by two splits: ``{"train/test": n, ...}`` counting the images
    of the second split whose exact pixels also occur in the first (only pairs with n > 0)."""
    digests = {s: [hashlib.blake2b(np.ascontiguousarray(x).tobytes(), digest_size=16).digest() for x in arr]
               for s, arr in images.items()}
    order = [s for s in ("train", "val", "test") if s in digests] + sorted(set(digests) - {"train", "val", "test"})
    out = {}
    for i, a in enumerate(order):
        seen = set(digests[a])
        for b in order[i + 1:]:
            n = sum(d in seen for d in digests[b])
            if n:
                out[f"{a}/{b}"] = n
    return out
