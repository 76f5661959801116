"""Segmentation datasets: find the cases of a folder and check each image against its label map.

Layouts (detected in this order):

- MSD / nnU-Net: ``dataset.json`` + ``imagesTr/`` + ``labelsTr/`` (+ ``imagesTs/``, whose cases with a
  reference in ``labelsTs/`` form a fixed test set and the others unlabelled images). MSD lists
  its cases in ``dataset.json["training"]`` with one (possibly 4D, multi-channel) file per case;
  nnU-Net v2 names channels ``CASE_0000.nii.gz``, ``CASE_0001.nii.gz`` and labels ``CASE.nii.gz``.
- DRIVE style: ``training/`` and ``test/``, each with ``images/``, a label folder (``1st_manual/``,
  ``labels/``, ``masks/``) and optionally a field-of-view folder (``mask/``, ``fov/``); without one,
  photographs in a dark surround (fundus, dermoscopy) get theirs derived (``medcnn.data.fov``).
- Image + mask folders: ``images/`` and ``labels/`` (or ``masks/``) side by side.

The labels of the last two layouts are read from the label maps (a 0/1 or 0/255 mask is
``foreground``, other values ``label_<v>``) unless a ``dataset.json`` beside ``images/`` (or
``training/``) names them as nnU-Net does: ``{"labels": {"background": 0, "hard exudate": 1}}``.

Files of the different folders are paired by name: the same stem, else the same digits
(``21_training.tif`` / ``21_manual1.gif`` / ``21_training_mask.gif``). An unpaired file is an error.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medcnn.data.fov import field_of_view, has_dark_surround
from medcnn.data.groups import dicom_group
from medcnn.errors import InputError
from medcnn.io import image_suffix, read_image
from medcnn.io.channels import same_grid, stack_channels
from medcnn.io.image import Image
from medcnn.io.inputs import is_image_file

log = logging.getLogger(__name__)

LABEL_DIRS = ("1st_manual", "labels", "masks", "manual", "annotations")
FOV_DIRS = ("fov", "mask", "roi")


@dataclass
class Case:
    id: str
    images: list[Path]  # one file (possibly multi-channel), or one file per channel
    label: Path | None = None
    fov: Path | None = None
    fov_from_image: bool = False  # no FOV file: the field of view is derived from the photograph (data.fov)


@dataclass
class SegmentationData:
    name: str
    source: str
    labels: dict[int, str]  # 0 = background included
    cases: list[Case]  # labelled cases to train / validate / test on
    test_cases: list[Case] = field(default_factory=list)  # a fixed test set from the layout (DRIVE test/)
    unlabelled: list[Case] = field(default_factory=list)  # e.g. MSD imagesTs
    modality: str = ""
    channel_names: list[str] = field(default_factory=list)

    @property
    def foreground(self) -> dict[int, str]:
        return {k: v for k, v in self.labels.items() if k != 0}


def _stem(p: Path) -> str:
    suffix = image_suffix(p.name)
    return p.name[: -len(suffix)] if suffix else p.stem


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))


def _digit_keys(stem: str) -> tuple[str, str]:
    groups = re.findall(r"\d+", stem)
    return ("_".join(groups), groups[0] if groups else "")


def _pair(images: list[Path], others: list[Path], what: str, folder: Path) -> dict[Path, Path]:
    """Map each image to its file in ``others``: the same stem, else the same digit groups, else
    the same first digit group (``21_training`` / ``21_manual1``); each match must be unique."""
    by_stem = {_stem(o): o for o in others}
    out = {}
    for im in images:
        if _stem(im) in by_stem:
            out[im] = by_stem[_stem(im)]
            continue
        for k in range(2):
            key = _digit_keys(_stem(im))[k]
            cands = [o for o in others if key and _digit_keys(_stem(o))[k] == key]
            if len(cands) == 1:
                out[im] = cands[0]
                break
        else:
            raise InputError(f"no {what} for this image in {folder} (files are paired by name or by the "
                             f"number in their names)", im)
    used = list(out.values())
    dup = next((o for o in used if used.count(o) > 1), None)
    if dup is not None:
        raise InputError(f"this {what} matches several images; name the files so they pair one to one", dup)
    return out


def named_folder(name: str) -> Path | None:
    """The data-root folder of a dataset named as ``medcnn fetch`` names it (``msd-hippocampus``,
    ``drive``, or their folder names); None for a name the catalog does not know. A known dataset that
    is not there yet is one line saying how to get it."""
    from medcnn.data import catalog
    from medcnn.data.fetch import data_root

    key = str(name).strip().lower().replace("_", "-")
    info = next((d for d in (catalog.MSD_HIPPOCAMPUS, catalog.DRIVE)  # the segmentation datasets
                 if key in (d["name"], d["folder"].replace("_", "-"))), None)
    if info is None or Path(name).expanduser().exists():
        return None
    folder = data_root() / info["folder"]
    if not folder.is_dir():
        raise InputError(f"dataset {info['name']} is not in the data root (run: medcnn fetch {info['name']})", folder)
    return folder


def load_segmentation(path: str | Path) -> SegmentationData:
    """A segmentation dataset: a folder (MSD / nnU-Net, DRIVE-style, images/ + labels/), or the name of
    one in the data root (``msd-hippocampus``, ``drive``, or any folder there, as a packed model's plan
    names its data)."""
    from medcnn.data.fetch import in_data_root

    p = named_folder(str(path)) or in_data_root(path)
    if not p.is_dir():
        raise InputError("not a folder; a segmentation dataset is a folder (MSD/nnU-Net, DRIVE-style, or "
                         "images/ + labels/)", p)
    if (p / "dataset.json").is_file() and (p / "imagesTr").is_dir():
        return _load_msd(p)
    if (p / "training").is_dir() and (p / "training" / "images").is_dir():
        return _load_drive_style(p)
    if (p / "images").is_dir():
        cases = _folder_cases(p)
        return SegmentationData(name=p.name, source=str(p), labels=_labels_of(p, cases), cases=cases)
    raise InputError("no segmentation layout found: expected dataset.json + imagesTr/ + labelsTr/ (MSD / nnU-Net), "
                     "training/images + test/images (DRIVE style), or images/ + labels/", p)


def _folder_cases(folder: Path) -> list[Case]:
    images = _images_in(folder / "images")
    if not images:
        raise InputError("no images found", folder / "images")
    label_dir = next((folder / d for d in LABEL_DIRS if (folder / d).is_dir()), None)
    fov_dir = next((folder / d for d in FOV_DIRS if (folder / d).is_dir() and folder / d != label_dir), None)
    if label_dir is None:
        raise InputError(f"no label folder next to images/ (one of {', '.join(LABEL_DIRS)})", folder)
    labels = _pair(images, _images_in(label_dir), "label", label_dir)
    fovs = _pair(images, _images_in(fov_dir), "field-of-view mask", fov_dir) if fov_dir else {}
    derive = not fovs and has_dark_surround(read_image(images[0]).array)
    if derive:
        log.info("%s: no field-of-view masks; each photograph's is derived from its dark surround", folder)
    return [Case(id=_stem(im), images=[im], label=labels[im], fov=fovs.get(im), fov_from_image=derive) for im in images]


MAX_LABELS = 64  # more values than this in a layout without a label list: not a label map


def _labels_from_files(cases: list[Case], limit: int = 8) -> dict[int, str]:
    """Label values of a layout without a label list: read a few label maps (binary masks 0/255 -> 0/1)."""
    values: set[int] = set()
    for c in cases[:limit]:
        values |= set(np.unique(binarize_if_needed(read_image(c.label).array, c.label)).tolist())
    values.add(0)
    if len(values) > MAX_LABELS:
        raise InputError(f"the label maps hold {len(values)} different values (e.g. {sorted(values)[:6]}...): not a "
                         "label map (a grey image, or a mask saved with lossy compression that is not near 0/255)",
                         cases[0].label)
    return {int(v): ("background" if v == 0 else "foreground" if values == {0, 1} else f"label_{v}")
            for v in sorted(values)}


NEAR_BINARY = 0.98
"""Share of an 8-bit mask's pixels within 32 grey levels of 0 or 255 above which the other levels
are compression noise (a 0/255 mask saved as JPEG), not labels."""


def binarize_if_needed(arr: np.ndarray, path: Path | None = None) -> np.ndarray:
    """0/255 (8-bit) masks, as PNG/GIF masks are usually saved, become 0/1. A 0/255 mask blurred by
    lossy compression (JPEG: a few hundred grey levels at the edges) is thresholded at 128, and the
    correction logged with its extent. Other maps (a few label values) are kept."""
    vals = np.unique(arr)
    if len(vals) <= 2 and vals.max(initial=0) == 255:
        return (arr > 0).astype(np.uint8)
    if arr.dtype == np.uint8 and len(vals) > 2 and vals.max() > 127:
        near = (arr <= 32) | (arr >= 223)
        if near.mean() >= NEAR_BINARY:
            log.warning("%s: a 0/255 mask with %d grey levels (lossy compression?) thresholded at 128; %.2f %% of "
                        "its pixels were neither near 0 nor near 255", path.name if path else "mask", len(vals),
                        100 * (1 - near.mean()))
            return (arr > 127).astype(np.uint8)
    return arr


def _load_drive_style(p: Path) -> SegmentationData:
    train = _folder_cases(p / "training")
    test = _folder_cases(p / "test") if (p / "test" / "images").is_dir() else []
    if test and any(c.label is None for c in test):
        test = []
    return SegmentationData(name=p.name, source=str(p), labels=_labels_of(p, train), cases=train,
                            test_cases=test, modality="fundus photograph" if "drive" in p.name.lower() else "")


def _read_meta(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"unreadable dataset.json ({e})", path) from None
    if not isinstance(meta, dict):
        raise InputError("dataset.json is not a JSON object", path)
    return meta


def _labels_from_json(raw: dict, path: Path) -> dict[int, str]:
    """Label names of a dataset.json: MSD's {"0": "background", "1": "Anterior"} or nnU-Net v2's
    {"background": 0, "Anterior": 1} (region lists, nnU-Net's overlapping labels, are skipped)."""
    try:
        if raw and all(str(k).lstrip("-").isdigit() for k in raw):
            labels = {int(k): str(v) for k, v in raw.items()}
        else:
            labels = {int(v): str(k) for k, v in raw.items() if not isinstance(v, (list, tuple))}
    except (TypeError, ValueError, AttributeError):
        raise InputError("dataset.json 'labels' is neither {value: name} nor {name: value}", path) from None
    labels.setdefault(0, "background")
    return dict(sorted(labels.items()))


def _labels_of(folder: Path, cases: list[Case]) -> dict[int, str]:
    """The labels of a DRIVE-style or image + mask folder: named by its dataset.json if it has one
    (the masks' values must then be among them: read_case checks), else read from the masks."""
    meta_file = folder / "dataset.json"
    if meta_file.is_file():
        raw = _read_meta(meta_file).get("labels")
        if raw:
            return _labels_from_json(raw, meta_file)
    return _labels_from_files(cases)


def _load_msd(p: Path) -> SegmentationData:
    meta = _read_meta(p / "dataset.json")
    labels = _labels_from_json(meta.get("labels") or {}, p / "dataset.json")
    modality = meta.get("modality") or meta.get("channel_names") or {}
    channels = [str(modality[k]) for k in sorted(modality, key=lambda k: int(k))] if isinstance(modality, dict) else []
    ending = meta.get("file_ending", ".nii.gz")
    cases: list[Case] = []
    if isinstance(meta.get("training"), list) and meta["training"] and isinstance(meta["training"][0], dict):
        for entry in meta["training"]:
            img, lab = p / entry["image"], p / entry["label"]
            cid = _stem(img)
            if not img.exists():  # nnU-Net-converted copies of MSD keep the list but rename to _0000
                alt = sorted((p / "imagesTr").glob(f"{cid}_[0-9][0-9][0-9][0-9]{ending}"))
                if not alt:
                    raise InputError(f"dataset.json lists {entry['image']} but it is missing", img)
                cases.append(Case(cid, alt, lab))
            else:
                cases.append(Case(cid, [img], lab))
    else:  # nnU-Net v2: cases from labelsTr
        for lab in sorted((p / "labelsTr").glob(f"*{ending}")):
            cid = lab.name[: -len(ending)]
            chans = sorted((p / "imagesTr").glob(f"{cid}_[0-9][0-9][0-9][0-9]{ending}"))
            if not chans:
                raise InputError(f"no image channels {cid}_0000{ending} for this label", lab)
            expected = [p / "imagesTr" / f"{cid}_{k:04d}{ending}" for k in range(len(channels) or len(chans))]
            if chans != expected:
                gone = [f.name for f in expected if f not in chans] or [f.name for f in chans if f not in expected]
                raise InputError(f"case {cid} has {len(chans)} channel files where dataset.json names "
                                 f"{len(expected)} ({', '.join(channels) or 'channels'}): {gone[0]} "
                                 f"{'is missing' if len(chans) < len(expected) else 'is not one of them'}", p / "imagesTr")
            cases.append(Case(cid, chans, lab))
    for c in cases:
        if not c.label.exists():
            raise InputError("label file listed in dataset.json is missing", c.label)
    unlabelled, test = [], []
    if (p / "imagesTs").is_dir():
        files = sorted(f for f in (p / "imagesTs").iterdir() if f.name.endswith(ending) and not f.name.startswith("."))
        per_channel = bool(cases) and cases[0].images[0].name != f"{cases[0].id}{ending}"  # CASE_0000 naming
        groups: dict[str, list[Path]] = {}
        for f in files:
            stem = f.name[: -len(ending)]
            groups.setdefault(re.sub(r"_\d{4}$", "", stem) if per_channel else stem, []).append(f)
        for cid, chans in groups.items():  # a reference in labelsTs makes a test case (the user's own test set)
            lab = p / "labelsTs" / f"{cid}{ending}"
            (test if lab.is_file() else unlabelled).append(Case(cid, chans, lab if lab.is_file() else None))
    for c in cases + test:
        if len(c.images) != len(cases[0].images):
            raise InputError(f"case {c.id} has {len(c.images)} channel files, case {cases[0].id} "
                             f"{len(cases[0].images)}: every case needs the same channels", c.images[0].parent)
    return SegmentationData(name=str(meta.get("name") or p.name), source=str(p), labels=labels,
                            cases=cases, test_cases=test, unlabelled=unlabelled, channel_names=channels,
                            modality=", ".join(channels))


# ---- one case, checked ------------------------------------------------------------------

def read_case(case: Case, labels: dict[int, str] | None = None, *, spacing_tol: float = 1e-3) -> tuple[Image, Image | None, Image | None]:
    """Read a case's image (channels stacked), label map and field of view; refuse pairs that do
    not describe the same voxels (shape, spacing) and label maps with undeclared values."""
    image = stack_channels(case.images, spacing_tol)
    label = fov = None
    if case.label is not None:
        label = read_image(case.label)
        if label.channels != 1:
            raise InputError(f"a label map has one channel, this one has {label.channels}", case.label)
        same_grid(image, label, case.images[0], case.label, spacing_tol)
        arr = binarize_if_needed(label.array, case.label)
        if not np.issubdtype(arr.dtype, np.integer):
            if not np.all(np.mod(arr, 1) == 0):
                raise InputError("label map has non-integer values", case.label)
            arr = arr.astype(np.int16)
        if labels is not None:
            bad = sorted(set(np.unique(arr).tolist()) - set(labels))
            if bad:
                raise InputError(f"label values {bad} are not among the dataset's labels {sorted(labels)}", case.label)
        label = Image(arr.astype(np.uint8) if arr.max(initial=0) < 256 and arr.min(initial=0) >= 0 else arr,
                      label.affine, label.meta)
    if case.fov is not None:
        fov = read_image(case.fov)
        same_grid(image, fov, case.images[0], case.fov, spacing_tol)
        fov = Image((fov.array[:1] > 0).astype(np.uint8), fov.affine, fov.meta)
    elif case.fov_from_image:
        fov = Image(field_of_view(image.array)[None], image.affine, image.meta)
    return image, label, fov


# ---- splits -------------------------------------------------------------------------------

def split_cases(ids: list[str], *, test_fraction: float = 0.2, val_fraction: float = 0.2, folds: int = 5,
                fold: int | None = None, seed: int = 0, groups: list[str] | None = None) -> dict[str, list[str]]:
    """A seeded split of the labelled case ids into train / val / test.

    ``test_fraction`` of the cases are held out as the test set (0 when the layout has its own).
    Of the rest, ``fold=None`` takes ``val_fraction`` for validation; ``fold=k`` takes the k-th of
    ``folds`` equal parts (k-fold cross-validation, every case validated once across the folds).
    ``groups`` (one per id, e.g. the patient) are kept whole: the split draws groups, not cases.
    """
    members: dict[str, list[str]] = {}
    for i, g in zip(ids, groups or ids):
        members.setdefault(g, []).append(i)
    names = list(members)
    rng = np.random.default_rng(seed)
    order = [names[i] for i in rng.permutation(len(names))]

    def take(pool: list[str], n: int) -> list[str]:
        """Groups from the front of ``pool`` until they hold ``n`` cases."""
        out, count = [], 0
        for g in pool:
            if count >= n:
                break
            out.append(g)
            count += len(members[g])
        return out

    test = take(order, int(round(len(ids) * test_fraction)))
    rest = order[len(test):]
    n_rest = sum(len(members[g]) for g in rest)
    if fold is None:
        val = take(rest, max(1, int(round(n_rest * val_fraction))) if len(rest) > 1 else 0)
    else:
        if not 0 <= fold < folds:
            raise ValueError(f"fold must be in 0..{folds - 1}, got {fold}")
        val = rest[fold::folds]
    train = [g for g in rest if g not in set(val)]
    return {name: sorted(c for g in part for c in members[g])
            for name, part in (("train", train), ("val", val), ("test", test))}


def case_group(case: Case) -> str:
    """The patient of a DICOM case (hashed; see medcnn.data.groups), else the case itself."""
    return dicom_group(case.images[0]) or case.id if case.images else case.id


def looks_like_segmentation(data: str | Path) -> bool:
    """True for the folder layouts :func:`load_segmentation` reads (and a present dataset named as
    ``medcnn fetch`` names it)."""
    try:
        p = named_folder(str(data)) or Path(data)
    except InputError:  # a known name, not fetched: loading it says so
        return True
    if not p.is_dir():
        return False
    return ((p / "dataset.json").is_file() and (p / "imagesTr").is_dir()) or (p / "training" / "images").is_dir() \
        or ((p / "images").is_dir() and any((p / d).is_dir() for d in LABEL_DIRS))
