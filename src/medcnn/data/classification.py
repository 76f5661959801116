"""Classification datasets held in memory: MedMNIST names/npz files, class folders, CSV lists.

Every source becomes a :class:`ClassificationData`: per split, an image array
(N, C, *spatial) — uint8 when the source is 8-bit, else float32 in [0, 1] — and labels
((N,) int64, or (N, K) 0/1 for multi-label). With 2 CPU cores, tensors in memory and
augmentation of whole batches beat per-sample loading in worker processes.
"""
from __future__ import annotations

import csv
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medcnn.data import catalog
from medcnn.data.fetch import fetch
from medcnn.data.groups import check_groups_within_splits, group_of, stratified_group_split
from medcnn.errors import ConfigError, InputError
from medcnn.io import read_image
from medcnn.io.dicom import dicom_identity, is_dicom_file
from medcnn.io.inputs import PATH_COLUMNS, is_image_file
from medcnn.io.registry import image_suffix

SPLITS = ("train", "val", "test")


@dataclass
class ClassificationData:
    name: str
    images: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    label_type: str
    class_names: list[str]
    modality: str | None = None
    spacing: list[float] | None = None
    source: str = ""
    files: dict[str, list[str]] = field(default_factory=dict)  # per split, for folder/CSV data
    groups: dict[str, list[str]] = field(default_factory=dict)  # per split: the patient of each file

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def spatial_dims(self) -> int:
        return self.images["train"].ndim - 2

    @property
    def channels(self) -> int:
        return int(self.images["train"].shape[1])

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The images and labels of split ``name``; ``all``: every split's, in train/val/test order
        (an external set evaluated as a whole)."""
        if name == "all":
            present = [s for s in SPLITS if s in self.images]
            return (np.concatenate([self.images[s] for s in present]),
                    np.concatenate([self.labels[s] for s in present]))
        if name not in self.images:
            raise ConfigError(f"split {name!r} not in dataset {self.name} (has {sorted(self.images)}, or all)")
        return self.images[name], self.labels[name]

    def label_subset(self, fraction: float, seed: int = 0, splits: tuple[str, ...] = ("train", "val")) -> "ClassificationData":
        """A copy keeping ``fraction`` of the labelled images of ``splits``, stratified by class (at
        least one image per class; multilabel: by the label pattern), drawn with ``seed``; the test
        split is kept whole. Validation is cut too by default: a study with 10 % of the labels has
        10 % of the validation labels as well, not more validation than training images."""
        if not 0 < fraction <= 1:
            raise ConfigError(f"label fraction must be in (0, 1], got {fraction}")
        if fraction == 1:
            return self
        rng = np.random.default_rng(seed)
        images, labels = dict(self.images), dict(self.labels)
        files, groups = dict(self.files), dict(self.groups)
        for split in (s for s in splits if s in self.labels):
            y = self.labels[split]
            _, strata = np.unique(y.reshape(len(y), -1), axis=0, return_inverse=True)
            keep = []
            for s in np.unique(strata):
                idx = np.flatnonzero(strata == s)
                keep.append(rng.choice(idx, max(1, int(round(fraction * len(idx)))), replace=False))
            keep = np.sort(np.concatenate(keep))
            images[split], labels[split] = self.images[split][keep], y[keep]
            for per_split in (files, groups):
                if split in per_split:
                    per_split[split] = [per_split[split][i] for i in keep]
        return dataclasses.replace(self, images=images, labels=labels, files=files, groups=groups)


def load_classification(data: str, *, input_size: list[int] | None = None, channels: int | None = None,
                        normalization: str = "auto", seed: int = 0) -> ClassificationData:
    """Load DATA: a MedMNIST name (``breastmnist``, ``organmnist3d_64``), an ``.npz`` file,
    a folder of class sub-folders (optionally under train/val/test), or a CSV of path,label."""
    p = Path(data)
    if p.suffix == ".npz":
        if not p.is_file():
            raise InputError("file not found", p)
        return load_npz(p)
    if p.is_dir():
        return load_folder(p, input_size=input_size, channels=channels, normalization=normalization, seed=seed)
    if p.suffix.lower() == ".csv":
        if not p.is_file():
            raise InputError("file not found", p)
        return load_csv(p, input_size=input_size, channels=channels, normalization=normalization, seed=seed)
    if p.exists():
        raise InputError("not a dataset: expected a MedMNIST name, an .npz file, a class folder or a CSV", p)

    return load_npz(fetch(data, progress=True))


# ---- MedMNIST-style npz ----------------------------------------------------------------

def load_npz(path: str | Path) -> ClassificationData:
    path = Path(path)
    try:
        npz = np.load(path, allow_pickle=False)
        keys = set(npz.files)
    except Exception as e:  # zipfile/pickle/OSError: all mean "not a readable npz"
        raise InputError(f"not a readable .npz file ({type(e).__name__}: {e})".splitlines()[0], path) from None
    need = {f"{s}_{k}" for s in SPLITS for k in ("images", "labels")}
    missing = sorted(need - keys)
    if missing:
        raise InputError(f"missing key(s) {missing}; a MedMNIST-style npz holds {sorted(need)}", path)
    _check_npz_sizes(path, sorted(need))

    flag = path.name[:-4].lower()
    flag = flag.rsplit("_", 1)[0] if flag.rsplit("_", 1)[-1].isdigit() else flag
    info = catalog.MEDMNIST.get(flag)
    images, labels = {}, {}
    for s in SPLITS:
        try:
            x, y = npz[f"{s}_images"], npz[f"{s}_labels"]
        except Exception as e:
            raise InputError(f"cannot read {s} arrays ({type(e).__name__}: {e})", path) from None
        if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
            raise InputError(f"{s}_images / {s}_labels are not .npy arrays inside the npz", path)
        images[s], labels[s] = _check_images(x, path, s), _check_labels(y, len(x), path, s)

    if info is not None:
        task = info["task"]
        names = [info["label"][str(i)] for i in range(len(info["label"]))]
        label_type = {"multi-label, binary-class": "multilabel", "binary-class": "binary"}.get(task, "multiclass")
        modality = _MEDMNIST_MODALITY.get(flag)
    else:
        label_type, names = _infer_labels(labels)
        modality = None
    for s in SPLITS:
        labels[s] = _finalise_labels(labels[s], label_type, len(names), path, s)
    return ClassificationData(name=flag, images=images, labels=labels, label_type=label_type,
                              class_names=names, modality=modality, source=str(path))


MAX_NPZ_BYTES = 16 * 1024**3
"""Arrays of an npz dataset may decompress to at most this much in all (checked before decoding)."""


def _check_npz_sizes(path: Path, names: list[str]) -> None:
    """Refuse, before anything is decompressed, an npz whose arrays declare more than MAX_NPZ_BYTES
    (a zip bomb, or a corrupt header), hold Python objects, or disagree with their own headers."""
    import zipfile

    total = 0
    try:
        with zipfile.ZipFile(path) as zf:
            for name in names:
                info = zf.getinfo(name + ".npy")
                with zf.open(info) as fh:
                    fmt = np.lib.format
                    read = fmt.read_array_header_1_0 if fmt.read_magic(fh) == (1, 0) else fmt.read_array_header_2_0
                    shape, _, dtype = read(fh)
                if dtype.hasobject:
                    raise InputError(f"{name} holds Python objects; only numeric arrays are read", path)
                declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if declared > info.file_size:
                    raise InputError(f"{name} declares {declared} bytes of data but its member holds "
                                     f"{info.file_size}: corrupt or truncated", path)
                total += info.file_size
    except InputError:
        raise
    except Exception as e:  # zipfile/format errors: a corrupt container
        raise InputError(f"not a readable .npz file ({type(e).__name__}: {e})", path) from None
    if total > MAX_NPZ_BYTES:
        raise InputError(f"its arrays decompress to {total / 2**30:.1f} GiB, over the "
                         f"{MAX_NPZ_BYTES / 2**30:.0f} GiB limit (medcnn.data.classification.MAX_NPZ_BYTES)", path)


_MEDMNIST_MODALITY = {
    "pathmnist": "pathology (H&E)", "chestmnist": "chest X-ray", "dermamnist": "dermatoscopy",
    "octmnist": "retinal OCT", "pneumoniamnist": "chest X-ray", "retinamnist": "fundus photo",
    "breastmnist": "breast ultrasound", "bloodmnist": "blood cell microscopy", "tissuemnist": "kidney cortex microscopy",
    "organamnist": "abdominal CT", "organcmnist": "abdominal CT", "organsmnist": "abdominal CT",
    "organmnist3d": "abdominal CT", "nodulemnist3d": "chest CT", "adrenalmnist3d": "shape from abdominal CT",
    "fracturemnist3d": "chest CT", "vesselmnist3d": "shape from brain MRA", "synapsemnist3d": "electron microscopy",
}


def _check_images(x: np.ndarray, path: Path, split: str) -> np.ndarray:
    if x.ndim == 3:  # (N, H, W) grey 2D
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (3, 4) and x.shape[1] not in (3, 4):  # (N, H, W, C) colour 2D
        x = np.moveaxis(x[..., :3], -1, 1)
    elif x.ndim == 4:  # (N, D, H, W) grey 3D
        x = x[:, None]
    elif x.ndim != 5:
        raise InputError(f"{split}_images has shape {x.shape}; expected (N,H,W), (N,H,W,C) or (N,D,H,W)", path)
    if len(x) == 0:
        raise InputError(f"{split}_images is empty", path)
    if x.dtype != np.uint8:
        if not np.issubdtype(x.dtype, np.number):
            raise InputError(f"{split}_images has non-numeric dtype {x.dtype}", path)
        x = x.astype(np.float32)
        if not np.isfinite(x).all():
            raise InputError(f"{split}_images contains NaN or infinite values", path)
        lo, hi = float(x.min()), float(x.max())
        x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    return np.ascontiguousarray(x)


def _check_labels(y: np.ndarray, n: int, path: Path, split: str) -> np.ndarray:
    if not np.issubdtype(y.dtype, np.number):
        raise InputError(f"{split}_labels has non-numeric dtype {y.dtype}", path)
    rows = len(y) if y.ndim else 0
    if rows != n:
        raise InputError(f"{split}_labels has {rows} rows but {split}_images has {n}", path)
    y = y.reshape(n, -1)
    if not np.isfinite(y.astype(np.float64)).all():
        raise InputError(f"{split}_labels contains NaN or infinite values", path)
    if (y < 0).any() or not np.equal(np.mod(y, 1), 0).all():
        raise InputError(f"{split}_labels must be non-negative integers", path)
    return y.astype(np.int64)


def _infer_labels(labels: dict[str, np.ndarray]) -> tuple[str, list[str]]:
    y = labels["train"]
    if y.shape[1] > 1:
        return "multilabel", [str(i) for i in range(y.shape[1])]
    k = int(max(v.max() for v in labels.values())) + 1
    return ("binary" if k == 2 else "multiclass"), [str(i) for i in range(max(k, 2))]


def _finalise_labels(y: np.ndarray, label_type: str, k: int, path: Path, split: str) -> np.ndarray:
    if label_type == "multilabel":
        if y.shape[1] != k or y.max() > 1:
            raise InputError(f"{split}_labels must be (N, {k}) with 0/1 values for multi-label data", path)
        return y.astype(np.float32)
    if y.shape[1] != 1:
        raise InputError(f"{split}_labels has shape {y.shape}; expected (N,) or (N, 1)", path)
    y = y[:, 0]
    if y.max() >= k:
        raise InputError(f"{split}_labels has label {int(y.max())} but the dataset has {k} classes (0..{k - 1})", path)
    return y


# ---- image files: class folders and CSV --------------------------------------------------

GROUP_COLUMNS = ("group", "patient", "patient_id", "subject")
"""CSV columns naming the patient (group) of a row; rows of one group always share a split."""


@dataclass
class _Row:
    path: str
    label: str
    split: str | None
    group: str


def load_folder(root: Path, *, input_size: list[int] | None = None, **kw: Any) -> ClassificationData:
    """``root/CLASS/*`` (a seeded 70/10/20 split by patient) or ``root/{train,val,test}/CLASS/*``.

    Images sit in a class folder or below it; a sub-folder of a class folder is one case (patient),
    and DICOM files group by their patient. A folder holding one multi-slice DICOM series is one 3D
    sample unless ``input_size`` asks for 2D images (then its slices are samples of one group).
    """
    if (root / "imagesTr").is_dir():
        raise ConfigError("this is a segmentation dataset (imagesTr/labelsTr); classification needs "
                          "one sub-folder per class", root)
    split_dirs = [root / s for s in SPLITS if (root / s).is_dir()]
    if split_dirs and not (root / "train").is_dir():
        raise InputError("has split folders but no train/ folder", root)
    volumes = None if input_size is None else len(input_size) == 3
    rows: list[_Row] = []
    bases = [(root / s, s) for s in SPLITS if (root / s).is_dir()] if split_dirs else [(root, None)]
    for base, split in bases:
        for cls_dir in sorted(d for d in base.iterdir() if d.is_dir() and not d.name.startswith(".")):
            rows += [_Row(str(f), cls_dir.name, split, group_of(f, cls_dir)) for f in _samples(cls_dir, volumes)]
    if not rows:
        raise InputError("no images found (expected one sub-folder of images per class)", root)
    return _from_rows(rows, root.name, str(root), input_size=input_size, **kw)


def _samples(class_dir: Path, volumes: bool | None) -> list[Path]:
    """The samples below a class folder: image files, and the folders of DICOM series read as
    volumes (``volumes`` True; None: when every image there belongs to such a series)."""
    files = sorted(f for f in class_dir.rglob("*") if f.is_file() and is_image_file(f))
    if volumes is False:
        return files
    series = _series_folders(class_dir, files)
    in_series = {f for f in files if f.parent in series}
    if volumes is None and (not series or len(in_series) < len(files)):
        return files
    return sorted(series) + [f for f in files if f not in in_series]


def _series_folders(class_dir: Path, files: list[Path]) -> set[Path]:
    """Folders strictly below ``class_dir`` whose image files are all DICOM and form one series of
    two or more slices."""
    by_folder: dict[Path, list[Path]] = {}
    for f in files:
        if f.parent != class_dir:
            by_folder.setdefault(f.parent, []).append(f)
    out = set()
    for folder, fs in by_folder.items():
        if len(fs) < 2 or not all(is_dicom_file(f) for f in fs):
            continue
        uids = {(dicom_identity(f) or ("", "", ""))[2] for f in fs}
        if len(uids) == 1 and "" not in uids:
            out.add(folder)
    return out


ID_COLUMNS = ("image_id", "image_name", "isic_id", "id", "name")
"""CSV columns naming an image file without its folder or suffix (``ISIC_0000000``), looked up next
to the CSV and in its sub-folders."""
LABEL_COLUMNS = ("label", "class", "target", "diagnosis")


def load_csv(path: Path, **kw: Any) -> ClassificationData:
    """A CSV of images and labels, optionally with ``split`` (train/val/test) and ``group`` (the
    patient: rows of one group always share a split; also read from ``patient``/``patient_id``/``subject``).

    - The image: a ``path`` column (also ``file``, ``filename``, ``image``...; a DICOM series folder is
      one 3D sample), or an id column (``image_id``, ``id``...: the file's name without folder or
      suffix, found next to the CSV or in its sub-folders).
    - The label: a ``label`` column (also ``class``, ``target``, ``diagnosis``), else the one other
      column. A 0/1 column named after a finding (ISIC's ``image_id,melanoma``) gives the classes
      ``not <finding>`` and ``<finding>``; numbers are read as numbers (``1.0`` is ``1``)."""
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            fields = [c.strip().lower() for c in (reader.fieldnames or [])]
            rows_in = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"cannot read CSV ({e})".splitlines()[0], path) from None
    path_col = next((c for c in (*PATH_COLUMNS, *ID_COLUMNS) if c in fields), None)
    group_col = next((c for c in GROUP_COLUMNS if c in fields), None)
    rest = [c for c in fields if c not in (path_col, group_col, "split")]
    label_col = next((c for c in LABEL_COLUMNS if c in fields), rest[0] if len(rest) == 1 else None)
    if path_col is None or label_col is None:
        raise InputError(f"CSV needs an image column ({', '.join(PATH_COLUMNS + ID_COLUMNS)}) and a label column "
                         f"('label', or the only other column); found {fields}", path)
    find = _ImageIndex(path.parent)
    rows = []
    for i, r in enumerate(rows_in, start=2):
        r = {k.strip().lower(): (v or "").strip() for k, v in r.items() if k}
        if not r.get(path_col):
            raise InputError(f"line {i}: empty {path_col}", path)
        f = find(r[path_col], i, path)
        split = r.get("split") or None
        if split is not None and split not in SPLITS:
            raise InputError(f"line {i}: split must be one of {SPLITS}, got {split!r}", path)
        if not r.get(label_col):
            raise InputError(f"line {i}: empty label ({label_col})", path)
        group = r.get(group_col or "", "")
        if group_col and not group:
            raise InputError(f"line {i}: empty {group_col}", path)
        rows.append(_Row(str(f), _number(r[label_col]), split, f"group:{group}" if group else group_of(f)))
    if not rows:
        raise InputError("CSV has no rows", path)
    names = None
    if label_col not in LABEL_COLUMNS and {r.label for r in rows} == {"0", "1"}:  # a finding, present or not
        names = {"0": f"not {label_col}", "1": label_col}
        rows = [dataclasses.replace(r, label=names[r.label]) for r in rows]
    return _from_rows(rows, path.stem, str(path), order=list(names.values()) if names else None, **kw)


def _number(label: str) -> str:
    """``1.0`` -> ``1``: a whole number written as a float names its class by the integer (``01``
    and ``A1`` stay as they are)."""
    if "." not in label:
        return label
    try:
        v = float(label)
    except ValueError:
        return label
    return str(int(v)) if v.is_integer() else label


class _ImageIndex:
    """The file of a CSV's image column: a path (absolute, or relative to the CSV), else a file name
    with or without its suffix found next to the CSV or in one of its sub-folders (indexed on first use)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._index: dict[str, list[Path]] | None = None

    def __call__(self, value: str, line: int, csv_path: Path) -> Path:
        f = Path(value)
        f = f if f.is_absolute() else self.folder / f
        if f.exists() or len(Path(value).parts) > 1:
            return f  # a missing file named by its path is reported when it is read
        found = self.index().get(Path(value).name, [])
        if len(found) == 1:
            return found[0]
        if not found and f.suffix and image_suffix(f):
            return f
        what = "no image file" if not found else f"{len(found)} image files"
        raise InputError(f"line {line}: {what} named {value!r} next to the CSV or in its sub-folders", csv_path)

    def index(self) -> dict[str, list[Path]]:
        if self._index is None:
            self._index = {}
            for d in (self.folder, *sorted(p for p in self.folder.iterdir() if p.is_dir())):
                for p in sorted(d.iterdir()):
                    suffix = image_suffix(p) if p.is_file() else None
                    if suffix:
                        for key in {p.name, p.name[:-len(suffix)]}:
                            self._index.setdefault(key, []).append(p)
        return self._index


def choose_input_size(shape: tuple[int, ...]) -> list[int]:
    """Round an image's size to the nearest MedMNIST size at or above the median side (max 224 / 64)."""
    side = float(np.median(shape))
    sizes = (28, 64, 128, 224) if len(shape) == 2 else (28, 64)
    for s in sizes:
        if side <= s * 1.25:
            return [s] * len(shape)
    return [sizes[-1]] * len(shape)


def _from_rows(rows: list[_Row], name, source, *, input_size=None, channels=None, normalization="auto",
               seed=0, order: list[str] | None = None) -> ClassificationData:
    """``order``: the class names in index order (default: the labels sorted, numbers by value)."""
    from medcnn.data.preprocess import image_to_array

    class_names = order or sorted({r.label for r in rows}, key=_natural)
    if len(class_names) < 2:
        raise InputError(f"found only one class ({class_names[0]!r}); classification needs at least two", source)
    index = {c: i for i, c in enumerate(class_names)}
    groups = [r.group for r in rows]
    splits = [r.split for r in rows]
    if all(s is None for s in splits):
        splits = stratified_group_split([index[r.label] for r in rows], groups, seed)
        _check_split_possible(rows, splits, source)
    elif any(s is None for s in splits):
        raise InputError("either every row has a split or none does", source)
    else:
        check_groups_within_splits(groups, splits, source)
    if "train" not in splits or "val" not in splits:
        raise InputError("needs at least a train and a val split", source)

    first = read_image(rows[0].path)
    if input_size is None:
        input_size = choose_input_size(first.spatial_shape)
    if channels is None:
        channels = 3 if first.channels >= 3 else 1
    if normalization == "auto":
        normalization = "uint8" if first.array.dtype == np.uint8 else "percentile_clip"
    images: dict[str, list] = {s: [] for s in SPLITS}
    labels: dict[str, list] = {s: [] for s in SPLITS}
    files: dict[str, list] = {s: [] for s in SPLITS}
    split_groups: dict[str, list] = {s: [] for s in SPLITS}
    for r, split in zip(rows, splits):
        img = read_image(r.path)
        images[split].append(image_to_array(img, input_size, channels, normalization, path=r.path))
        labels[split].append(index[r.label])
        files[split].append(r.path)
        split_groups[split].append(r.group)
    out_images, out_labels = {}, {}
    for s in SPLITS:
        if images[s]:
            out_images[s] = np.stack(images[s])
            out_labels[s] = np.asarray(labels[s], dtype=np.int64)
    label_type = "binary" if len(class_names) == 2 else "multiclass"
    return ClassificationData(name=name, images=out_images, labels=out_labels, label_type=label_type,
                              class_names=class_names, modality=first.meta.get("modality"),
                              spacing=list(first.spacing), source=source,
                              files={s: v for s, v in files.items() if v},
                              groups={s: v for s, v in split_groups.items() if v})


def _check_split_possible(rows: list[_Row], splits: list[str], source) -> None:
    """Explain a class whose images come from too few patients to reach val and test."""
    for label in sorted({r.label for r in rows}, key=_natural):
        mine = [(r.group, s) for r, s in zip(rows, splits) if r.label == label]
        if len(mine) >= 3 and all(s == "train" for _, s in mine):
            n_groups = len({g for g, _ in mine})
            raise InputError(f"the {len(mine)} images of class {label!r} come from {n_groups} patient(s)/group(s); "
                             "a split by patient needs at least 3 per class (DICOM files group by PatientID: give "
                             "a CSV with a 'group' column, or train/val/test folders)", source)


def _natural(s: str):
    return (0, int(s)) if s.isdigit() else (1, s)
