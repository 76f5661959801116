"""Segmentation layouts on the real MSD Hippocampus and DRIVE folders, and the checks on bad pairs."""
import json
import shutil

import numpy as np
import pytest

from conftest import mini_lgg
from medcnn.data.segmentation import load_segmentation, read_case, split_cases
from medcnn.errors import InputError


def test_msd_hippocampus_layout(hippocampus_dir):
    ds = load_segmentation(hippocampus_dir)
    assert ds.labels == {0: "background", 1: "Anterior", 2: "Posterior"}
    assert len(ds.cases) == 260 and len(ds.unlabelled) == 130
    assert ds.channel_names == ["MRI"]
    image, label, fov = read_case(ds.cases[0], ds.labels)
    assert image.spatial_shape == label.spatial_shape and fov is None
    assert set(np.unique(label.array)) <= {0, 1, 2}


def test_drive_layout_pairs_images_labels_and_fov(drive_dir):
    ds = load_segmentation(drive_dir)
    assert len(ds.cases) == 20 and len(ds.test_cases) == 20
    assert ds.labels == {0: "background", 1: "foreground"}
    c = ds.cases[0]
    assert (c.images[0].name, c.label.name, c.fov.name) == ("21_training.tif", "21_manual1.gif", "21_training_mask.gif")
    image, label, fov = read_case(c, ds.labels)
    assert image.channels == 3 and set(np.unique(label.array)) == {0, 1} and set(np.unique(fov.array)) == {0, 1}
    assert 0.05 < label.array.mean() < 0.2  # vessels are ~12 % of the image


def test_split_is_seeded_and_folds_cover_every_case():
    ids = [f"c{i:03d}" for i in range(260)]
    a, b = split_cases(ids, seed=0), split_cases(ids, seed=0)
    assert a == b and len(a["test"]) == 52 and not set(a["test"]) & set(a["train"] + a["val"])
    assert split_cases(ids, seed=1)["test"] != a["test"]
    folds = [split_cases(ids, fold=k) for k in range(5)]
    assert all(f["test"] == a["test"] for f in folds)
    vals = sorted(sum((f["val"] for f in folds), []))
    assert vals == sorted(set(ids) - set(a["test"]))  # every non-test case validated exactly once


def test_split_keeps_a_patients_cases_together():
    ids = [f"c{i:03d}" for i in range(90)]
    groups = [f"patient{i // 3}" for i in range(90)]  # three scans per patient
    for fold in (None, 0, 3):
        split = split_cases(ids, groups=groups, fold=fold, seed=2)
        where = {}
        for part, cases in split.items():
            for c in cases:
                where.setdefault(groups[ids.index(c)], set()).add(part)
        assert len(where) == 30 and all(len(v) == 1 for v in where.values())
        assert len(split["test"]) == 18 and sorted(sum(split.values(), [])) == ids


def _mini_msd(hippocampus_dir, tmp_path, label_for_first=None):
    root = tmp_path / "Task04"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    meta = json.loads((hippocampus_dir / "dataset.json").read_text())
    meta["training"] = meta["training"][:2]
    for e in meta["training"]:
        shutil.copy(hippocampus_dir / e["image"], root / e["image"])
        shutil.copy(hippocampus_dir / e["label"], root / e["label"])
    if label_for_first is not None:
        shutil.copy(label_for_first, root / meta["training"][0]["label"])
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def test_label_of_another_shape_is_refused(hippocampus_dir, tmp_path):
    import nibabel as nib

    meta = json.loads((hippocampus_dir / "dataset.json").read_text())
    first = nib.load(str(hippocampus_dir / meta["training"][0]["image"])).shape
    other = next(hippocampus_dir / e["label"] for e in meta["training"]
                 if nib.load(str(hippocampus_dir / e["label"])).shape != first)
    ds = load_segmentation(_mini_msd(hippocampus_dir, tmp_path, label_for_first=other))
    with pytest.raises(InputError, match="shape .* differs from its image"):
        read_case(ds.cases[0], ds.labels)


def test_label_of_another_spacing_is_refused(hippocampus_dir, tmp_path):
    import nibabel as nib

    root = _mini_msd(hippocampus_dir, tmp_path)
    lab = root / json.loads((root / "dataset.json").read_text())["training"][0]["label"]
    img = nib.load(str(lab))
    affine = img.affine.copy()
    affine[:3, :3] *= 1.5  # same voxels, 1.5 mm instead of 1 mm
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), affine), str(lab))
    ds = load_segmentation(root)
    with pytest.raises(InputError, match=r"spacing \(1.5, 1.5, 1.5\) mm differs from its image's"):
        read_case(ds.cases[0], ds.labels)


def test_undeclared_label_values_are_refused(hippocampus_dir, tmp_path):
    root = _mini_msd(hippocampus_dir, tmp_path)
    meta = json.loads((root / "dataset.json").read_text())
    meta["labels"] = {"0": "background", "1": "Anterior"}  # 2 (Posterior) is undeclared
    (root / "dataset.json").write_text(json.dumps(meta))
    ds = load_segmentation(root)
    with pytest.raises(InputError, match=r"label values \[2\] are not among"):
        read_case(ds.cases[0], ds.labels)


def test_unpaired_image_is_named(drive_dir, tmp_path):
    root = tmp_path / "pairs"
    for sub in ("images", "labels"):
        (root / sub).mkdir(parents=True)
    for f in sorted((drive_dir / "training" / "images").iterdir())[:2]:
        shutil.copy(f, root / "images" / f.name)
    first = sorted((drive_dir / "training" / "1st_manual").iterdir())[0]
    shutil.copy(first, root / "labels" / first.name)
    with pytest.raises(InputError, match="no label for this image") as e:
        load_segmentation(root)
    assert "22_training.tif" in str(e.value)


def test_not_a_layout(tmp_path):
    with pytest.raises(InputError, match="no segmentation layout"):
        load_segmentation(tmp_path)


def test_lgg_layout_three_sequences_per_patient(lgg_dir, tmp_path):
    ds = load_segmentation(lgg_dir)
    assert len(ds.cases) == 110 and all(len(c.images) == 3 for c in ds.cases)
    assert ds.channel_names == ["pre-contrast", "FLAIR", "post-contrast"] and ds.labels == {0: "background", 1: "FLAIR abnormality"}
    image, label, _ = read_case(ds.cases[0], ds.labels)
    assert image.channels == 3 and label.array.max() == 1
    root = mini_lgg(lgg_dir, tmp_path / "lgg", n=3)
    gone = sorted((root / "imagesTr").glob("*_0002.nii.gz"))[1]
    gone.unlink()  # one patient lost its post-contrast file
    with pytest.raises(InputError, match=rf"case {gone.name[:-12]} has 2 channel files where dataset.json names 3 "
                                         rf"\(pre-contrast, FLAIR, post-contrast\): {gone.name} is missing"):
        load_segmentation(root)


def _fundus_pairs(drive_dir, root, n=2):
    from PIL import Image as PILImage

    for sub in ("images", "labels"):
        (root / sub).mkdir(parents=True)
    for img in sorted((drive_dir / "training" / "images").iterdir())[:n]:
        shutil.copy(img, root / "images" / img.name)
        stem = img.name.split("_")[0]
        yield root / "images" / img.name, np.asarray(PILImage.open(drive_dir / "training" / "1st_manual" / f"{stem}_manual1.gif"))


def test_a_jpeg_noisy_mask_is_thresholded_and_said(drive_dir, tmp_path, caplog):
    """Real DRIVE vessel masks (0/255) saved as JPEG: hundreds of grey levels at the edges."""
    from PIL import Image as PILImage

    root = tmp_path / "pairs"
    truth = {}
    for img, mask in _fundus_pairs(drive_dir, root):
        PILImage.fromarray(mask).save(root / "labels" / (img.stem + ".jpg"), quality=75)
        truth[img.stem] = mask > 127
    ds = load_segmentation(root)
    assert ds.labels == {0: "background", 1: "foreground"}  # not one label per grey level
    _, label, _ = read_case(ds.cases[0], ds.labels)
    assert np.mean(label.array[0] == truth[ds.cases[0].id]) > 0.98  # the mask as drawn, give or take its edges
    assert any("lossy compression" in r.getMessage() and "thresholded at 128" in r.getMessage() for r in caplog.records)


def test_a_grey_image_as_mask_is_refused(drive_dir, tmp_path):
    from PIL import Image as PILImage

    root = tmp_path / "pairs"
    for img, _ in _fundus_pairs(drive_dir, root):
        PILImage.open(img).convert("L").save(root / "labels" / (img.stem + ".png"))  # the photo, not a mask
    with pytest.raises(InputError, match="different values .* not a label map"):
        load_segmentation(root)


def test_a_labelled_imagests_is_the_fixed_test_set(lgg_dir, tmp_path):
    from medcnn.planning.segment import default_plan
    from medcnn.train.seg_data import case_split

    root = mini_lgg(lgg_dir, tmp_path / "lgg", n=8, n_test=2)
    ds = load_segmentation(root)
    assert len(ds.cases) == 6 and len(ds.test_cases) == 2 and not ds.unlabelled
    assert all(c.label is not None and len(c.images) == 3 for c in ds.test_cases)
    plan = default_plan(ds, str(root))
    assert plan.segment.split["test_fraction"] == 0.0
    split = case_split(plan, ds)
    assert sorted(split["test"]) == sorted(c.id for c in ds.test_cases)
    assert not set(split["train"]) & set(split["test"])


def test_a_dataset_json_names_the_labels_of_an_image_mask_folder(drive_dir, tmp_path):
    root = tmp_path / "pairs"
    for sub, src in (("images", "images"), ("masks", "1st_manual")):
        (root / sub).mkdir(parents=True)
        for f in sorted((drive_dir / "training" / src).iterdir())[:2]:
            shutil.copy(f, root / sub / f.name)
    assert load_segmentation(root).labels == {0: "background", 1: "foreground"}
    (root / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "vessel": 1}}))
    ds = load_segmentation(root)
    assert ds.labels == {0: "background", 1: "vessel"}
    _, label, _ = read_case(ds.cases[0], ds.labels)  # the 0/255 masks are read as 0/1
    assert set(np.unique(label.array)) == {0, 1}
    (root / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "vessel": 2}}))
    ds = load_segmentation(root)
    with pytest.raises(InputError, match=r"label values \[1\] are not among"):
        read_case(ds.cases[0], ds.labels)
    (root / "dataset.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="not a JSON object"):
        load_segmentation(root)
