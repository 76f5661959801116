"""Loading classification datasets from the real MedMNIST files, class folders and CSVs."""
import numpy as np
import pytest
from PIL import Image as PILImage

from conftest import require
from medcnn.data.classification import load_classification
from medcnn.errors import ConfigError, InputError


def test_breastmnist_official_split(breast_npz):
    d = load_classification(str(breast_npz))
    assert d.label_type == "binary" and d.class_names == ["malignant", "normal, benign"]
    assert {s: len(y) for s, y in d.labels.items()} == {"train": 546, "val": 78, "test": 156}
    assert d.images["train"].shape == (546, 1, 28, 28) and d.images["train"].dtype == np.uint8
    assert np.bincount(d.labels["train"]).tolist() == [147, 399]  # MedMNIST v2's published counts


def test_name_resolves_through_fetch(breast_npz, monkeypatch):
    monkeypatch.setenv("MEDCNN_DATA", str(breast_npz.parent.parent))
    d = load_classification("BreastMNIST")
    assert len(d.labels["test"]) == 156


def test_colour_and_3d(medmnist_dir):
    blood = load_classification(str(require(medmnist_dir / "bloodmnist.npz")))
    assert blood.label_type == "multiclass" and blood.num_classes == 8
    assert blood.images["val"].shape[1:] == (3, 28, 28)
    adrenal = load_classification(str(require(medmnist_dir / "adrenalmnist3d.npz")))
    assert adrenal.spatial_dims == 3 and adrenal.images["train"].shape[1:] == (1, 28, 28, 28)
    assert np.bincount(adrenal.labels["train"]).tolist() == [929, 259]


def _npz_from(real, path, **changes):
    arrays = {k: real[k] for k in real.files}
    arrays.update(changes)
    for k in [k for k, v in changes.items() if v is None]:
        del arrays[k]
    np.savez(path, **arrays)
    return path


def test_multilabel_npz(medmnist_dir, tmp_path):
    """Real BloodMNIST images with one-hot label rows: a multi-label dataset."""
    real = np.load(require(medmnist_dir / "bloodmnist.npz"))
    ch = {f"{s}_labels": np.eye(8, dtype=np.uint8)[real[f"{s}_labels"][:, 0]] for s in ("train", "val", "test")}
    d = load_classification(str(_npz_from(real, tmp_path / "blood_onehot.npz", **ch)))
    assert d.label_type == "multilabel" and d.labels["train"].shape[1] == 8


@pytest.mark.parametrize("change, msg", [
    ({"val_labels": None}, "missing key"),
    ({"test_labels": "out_of_range"}, "has label 2 but the dataset has 2 classes"),
    ({"train_images": "nan"}, "NaN"),
    ({"val_labels": "short"}, "rows but"),
    ({"train_labels": "negative"}, "non-negative"),
])
def test_bad_npz(breast_npz, tmp_path, change, msg):
    real = np.load(breast_npz)
    key, kind = next(iter(change.items()))
    if kind == "out_of_range":
        change = {key: real[key] + 1}
    elif kind == "nan":
        x = real[key].astype(np.float32)
        x[0, 0, 0] = np.nan
        change = {key: x}
    elif kind == "short":
        change = {key: real[key][:-1]}
    elif kind == "negative":
        change = {key: real[key].astype(np.int64) - 1}
    path = _npz_from(real, tmp_path / "breastmnist.npz", **change)
    with pytest.raises(InputError, match=msg) as e:
        load_classification(str(path))
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_corrupt_npz(breast_npz, tmp_path):
    bad = tmp_path / "x.npz"
    bad.write_bytes(breast_npz.read_bytes()[:1000])
    with pytest.raises(InputError, match="not a readable"):
        load_classification(str(bad))


def _export_pngs(breast_npz, root, per_class=12):
    """Write real BreastMNIST images as PNGs in one folder per class."""
    real = np.load(breast_npz)
    x, y = real["train_images"], real["train_labels"][:, 0]
    for c, name in ((0, "malignant"), (1, "benign")):
        (root / name).mkdir(parents=True)
        for i in np.flatnonzero(y == c)[:per_class]:
            PILImage.fromarray(x[i]).save(root / name / f"{i}.png")
    return x, y


def test_class_folder_split_and_pixels(breast_npz, tmp_path):
    x, y = _export_pngs(breast_npz, tmp_path / "ds")
    d = load_classification(str(tmp_path / "ds"), seed=1)
    assert d.class_names == ["benign", "malignant"]
    n = {s: len(v) for s, v in d.labels.items()}
    assert sum(n.values()) == 24 and n["val"] >= 2 and n["test"] >= 2
    assert d.images["train"].dtype == np.uint8 and d.images["train"].shape[1:] == (1, 28, 28)
    # pixels are exactly the PNGs' (28 px needs no resize)
    f = d.files["train"][0]
    assert np.array_equal(d.images["train"][0, 0], np.asarray(PILImage.open(f)))
    # the same seed gives the same split
    assert load_classification(str(tmp_path / "ds"), seed=1).files == d.files


def test_csv(breast_npz, tmp_path):
    _export_pngs(breast_npz, tmp_path, per_class=6)
    rows = ["path,label,split"]
    for i, f in enumerate(sorted(tmp_path.rglob("*.png"))):
        rows.append(f"{f.relative_to(tmp_path)},{f.parent.name},{['train', 'train', 'val'][i % 3]}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    d = load_classification(str(tmp_path / "labels.csv"))
    assert len(d.labels["train"]) == 8 and len(d.labels["val"]) == 4 and "test" not in d.labels


def test_empty_folder_and_bad_csv(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images found"):
        load_classification(str(tmp_path / "empty"))
    (tmp_path / "l.csv").write_text("image_id,age,sex\na,55,female\n")  # which column is the label?
    with pytest.raises(InputError, match=r"CSV needs an image column \(path, .*image_id.*\) and a label column "
                                         r"\('label', or the only other column\); found \['image_id', 'age', 'sex'\]"):
        load_classification(str(tmp_path / "l.csv"))


def test_isic_label_files_load_as_published(data_root):
    """ISIC 2017's own CSVs (``image_id,melanoma`` with 0.0 / 1.0, ids without a suffix, images in a
    sub-folder) train as they are; melanoma is the positive class."""
    csv_file = require(data_root / "isic2017_melanoma" / "ISIC-2017_Validation_Classes.csv")
    d = load_classification(str(csv_file))
    assert d.label_type == "binary" and d.class_names == ["not melanoma", "melanoma"]
    assert sum(len(v) for v in d.labels.values()) == 150 and sum(int(v.sum()) for v in d.labels.values()) == 30
    f = d.files["train"][0]
    assert f.startswith(str(csv_file.parent / "validation" / "ISIC_")) and f.endswith(".jpg")
    assert d.images["train"].shape[1:] == (3, 128, 128)


def test_csv_layouts_users_bring(breast_npz, tmp_path):
    _export_pngs(breast_npz, tmp_path / "imgs", per_class=6)
    files = sorted((tmp_path / "imgs").rglob("*.png"))
    # ids without folder or suffix, a label column under another name, numbers written as floats
    rows = ["id,class"] + [f"{f.stem},{float(f.parent.name == 'malignant')}" for f in files]
    (tmp_path / "imgs" / "ids.csv").write_text("\n".join(rows) + "\n")
    d = load_classification(str(tmp_path / "imgs" / "ids.csv"))
    assert d.class_names == ["0", "1"] and sum(len(v) for v in d.labels.values()) == 12
    # a file name with its suffix, and a 0/1 column named after the finding
    rows = ["image_name,malignant"] + [f"{f.name},{int(f.parent.name == 'malignant')}" for f in files]
    (tmp_path / "imgs" / "names.csv").write_text("\n".join(rows) + "\n")
    d = load_classification(str(tmp_path / "imgs" / "names.csv"))
    assert d.class_names == ["not malignant", "malignant"]
    pos = [f for s in d.files for f, y in zip(d.files[s], d.labels[s]) if y == 1]
    assert len(pos) == 6 and all("/malignant/" in f for f in pos)
    # an id found twice, or nowhere: the line says so
    (tmp_path / "imgs" / "copy").mkdir()
    (tmp_path / "imgs" / "copy" / files[0].name).write_bytes(files[0].read_bytes())
    (tmp_path / "imgs" / "x.csv").write_text(f"image_id,label\n{files[0].stem},a\n")
    with pytest.raises(InputError, match=rf"line 2: 2 image files named '{files[0].stem}'"):
        load_classification(str(tmp_path / "imgs" / "x.csv"))
    (tmp_path / "imgs" / "y.csv").write_text("image_id,label\nISIC_123,a\n")
    with pytest.raises(InputError, match="line 2: no image file named 'ISIC_123' next to the CSV or in its sub-folders"):
        load_classification(str(tmp_path / "imgs" / "y.csv"))


def test_segmentation_folder_is_not_classification(hippocampus_dir):
    with pytest.raises(ConfigError, match="segmentation dataset"):
        load_classification(str(hippocampus_dir))


@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.5])
def test_label_subset_is_stratified_and_seeded(breast_npz, fraction):
    from medcnn.data.classification import load_classification

    data = load_classification(str(breast_npz))
    sub = data.label_subset(fraction, seed=3)
    for split in ("train", "val"):  # validation labels are as scarce as training labels
        y, ys = data.labels[split].ravel(), sub.labels[split].ravel()
        for c in np.unique(y):  # each class keeps its share (at least one image)
            assert (ys == c).sum() == max(1, round(fraction * (y == c).sum()))
        assert len(sub.images[split]) == len(ys)
    assert sub.images["test"] is data.images["test"]
    assert data.label_subset(fraction, seed=3, splits=("train",)).images["val"] is data.images["val"]
    again = data.label_subset(fraction, seed=3).images["train"]
    assert np.array_equal(again, sub.images["train"])
    assert not np.array_equal(data.label_subset(fraction, seed=4).images["train"], sub.images["train"]) or fraction == 0.01
    assert data.label_subset(1.0) is data
