"""Splits keep a patient whole: real TCIA DICOM re-issued as several patients, in class folders and CSVs."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from medcnn.data.classification import load_classification
from medcnn.data.groups import duplicates_across_splits, stratified_group_split
from medcnn.errors import InputError

PATIENTS = 8  # four per class, three slices each, from the 24 slices of the TCIA series


def _patients(series_dir, root, *, sub_folders=True, suffix=".dcm", same_patient_id=False):
    """Write the TCIA slices as PATIENTS patients (new Patient/Study/Series IDs) into class folders
    ``root/{tumour,normal}[/CASE]``; returns {file: patient}."""
    import pydicom
    from pydicom.uid import generate_uid

    slices = sorted(series_dir.glob("*.dcm"), key=lambda f: int(pydicom.dcmread(f, stop_before_pixels=True).InstanceNumber))
    owner = {}
    for k in range(PATIENTS):
        pid = "ANON" if same_patient_id else f"PAT{k:02d}"
        study, series = generate_uid(), generate_uid()
        folder = root / ("tumour" if k % 2 else "normal")
        if sub_folders:
            folder = folder / f"case{k}"
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(3):
            ds = pydicom.dcmread(slices[3 * k + j])
            ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = pid, study, series
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            f = folder / f"p{k}s{j}{suffix}"
            ds.save_as(f)
            owner[str(f)] = k
    return owner


def _assert_patients_whole(d, owner):
    where = {}
    for split, files in d.files.items():
        for f in files:
            where.setdefault(owner[f], set()).add(split)
    assert len(where) == PATIENTS
    assert all(len(s) == 1 for s in where.values()), where
    # the recorded groups are hashes, never the PatientID itself
    groups = {g for gs in d.groups.values() for g in gs}
    assert len(groups) == PATIENTS and not any("PAT" in g for g in groups)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dicom_slices_in_class_folders_keep_patients_whole(dicom_series_dir, tmp_path, seed):
    # flat class folders, files named without a suffix: grouped by PatientID read from the headers
    owner = _patients(dicom_series_dir, tmp_path / "ds", sub_folders=False, suffix="")
    d = load_classification(str(tmp_path / "ds"), input_size=[28, 28], seed=seed)
    assert sum(len(v) for v in d.labels.values()) == 3 * PATIENTS  # no suffix, recognised by content
    assert d.spatial_dims == 2 and set(d.labels) == {"train", "val", "test"}
    _assert_patients_whole(d, owner)


def test_series_folder_is_one_volume_or_grouped_slices(dicom_series_dir, tmp_path):
    owner = _patients(dicom_series_dir, tmp_path / "ds")
    d3 = load_classification(str(tmp_path / "ds"))  # auto: every image belongs to a series folder
    assert d3.spatial_dims == 3 and sum(len(v) for v in d3.labels.values()) == PATIENTS
    assert all(f.split("/")[-1].startswith("case") for fs in d3.files.values() for f in fs)
    d2 = load_classification(str(tmp_path / "ds"), input_size=[28, 28])  # a 2D plan: slices, kept together
    assert d2.spatial_dims == 2 and sum(len(v) for v in d2.labels.values()) == 3 * PATIENTS
    _assert_patients_whole(d2, owner)


def test_csv_group_column_and_dicom_groups(dicom_series_dir, tmp_path):
    owner = _patients(dicom_series_dir, tmp_path, sub_folders=False)
    files = sorted(owner)
    label = {f: "tumour" if "/tumour/" in f else "normal" for f in files}
    # no group column: DICOM files group by their PatientID
    (tmp_path / "a.csv").write_text("path,label\n" + "".join(f"{f},{label[f]}\n" for f in files))
    _assert_patients_whole(load_classification(str(tmp_path / "a.csv"), input_size=[28, 28]), owner)
    # an explicit group column wins (here: pairs of patients)
    (tmp_path / "b.csv").write_text("path,label,group\n" + "".join(
        f"{f},{label[f]},pair{owner[f] // 2}\n" for f in files))
    d = load_classification(str(tmp_path / "b.csv"), input_size=[28, 28])
    pair_splits = {}
    for split, fs in d.files.items():
        for f in fs:
            pair_splits.setdefault(owner[f] // 2, set()).add(split)
    assert all(len(s) == 1 for s in pair_splits.values())


def test_given_split_that_divides_a_patient_is_refused(dicom_series_dir, tmp_path):
    owner = _patients(dicom_series_dir, tmp_path, sub_folders=False)
    lines = ["path,label,split"]
    for i, f in enumerate(sorted(owner)):
        lines.append(f"{f},{'tumour' if '/tumour/' in f else 'normal'},{['train', 'val', 'test'][i % 3]}")
    (tmp_path / "s.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"patient 'patient-[0-9a-f]{12}' has images in both train and val"):
        load_classification(str(tmp_path / "s.csv"), input_size=[28, 28])


def test_one_patient_id_for_everyone_is_explained(dicom_series_dir, tmp_path):
    _patients(dicom_series_dir, tmp_path / "ds", sub_folders=False, same_patient_id=True)
    with pytest.raises(InputError, match="come from 1 patient"):
        load_classification(str(tmp_path / "ds"), input_size=[28, 28])


def test_case_sub_folders_of_images_are_groups(breast_npz, tmp_path):
    real = np.load(breast_npz)
    x, y = real["train_images"], real["train_labels"][:, 0]
    for c, name in ((0, "malignant"), (1, "benign")):
        for i in np.flatnonzero(y == c)[:24]:
            case = tmp_path / "ds" / name / f"case{i % 8}"
            case.mkdir(parents=True, exist_ok=True)
            PILImage.fromarray(x[i]).save(case / f"{i}.png")
    d = load_classification(str(tmp_path / "ds"), seed=3)
    split_of = {}
    for split, fs in d.files.items():
        for f in fs:
            case = "/".join(f.split("/")[-3:-1])
            assert split_of.setdefault(case, split) == split
    assert len(split_of) == 16 and set(d.labels) == {"train", "val", "test"}


def test_group_split_properties():
    rng = np.random.default_rng(0)
    groups = [f"g{rng.integers(40)}" for _ in range(400)]
    labels = [int(g[1:]) % 2 for g in groups]  # one label per group
    splits = stratified_group_split(labels, groups, seed=5)
    seen = {}
    assert all(seen.setdefault(g, s) == s for g, s in zip(groups, splits))
    share = {s: splits.count(s) / len(splits) for s in ("train", "val", "test")}
    assert 0.6 < share["train"] < 0.8 and 0.05 < share["val"] < 0.17 and 0.13 < share["test"] < 0.3
    assert stratified_group_split(labels, groups, seed=5) == splits
    # one image per group: the plain per-class split, every class in every split
    single = stratified_group_split([0] * 10 + [1] * 10, [str(i) for i in range(20)], seed=0)
    assert [single[:10].count(s) for s in ("train", "val", "test")] == [7, 1, 2]


def test_duplicates_across_official_splits_are_counted(breast_npz):
    d = load_classification(str(breast_npz))
    assert duplicates_across_splits(d.images) == {"train/test": 1}
    images = {"train": d.images["train"][:5], "test": d.images["train"][3:8]}
    assert duplicates_across_splits(images) == {"train/test": 2}


def test_run_records_the_groups_of_its_split(dicom_series_dir, tmp_path):
    import csv

    from medcnn.planning.classify import default_plan
    from medcnn.tasks import train

    owner = _patients(dicom_series_dir, tmp_path / "ds", sub_folders=False)
    d = load_classification(str(tmp_path / "ds"), input_size=[28, 28])
    plan = default_plan(d, str(tmp_path / "ds"))
    plan.epochs, plan.ensemble, plan.max_minutes = 1, 1, 0
    run = train(plan, d, tmp_path / "run")
    rows = list(csv.DictReader(open(run / "split.csv")))
    assert len(rows) == 3 * PATIENTS and {r["split"] for r in rows} == {"train", "val", "test"}
    patient_split = {}
    for r in rows:
        assert r["group"].startswith("patient-")
        assert patient_split.setdefault(owner[r["path"]], (r["group"], r["split"])) == (r["group"], r["split"])
    # the split file is itself a dataset CSV that gives back the same split
    again = load_classification(str(run / "split.csv"), input_size=[28, 28])
    assert {s: sorted(f) for s, f in again.files.items()} == {s: sorted(f) for s, f in d.files.items()}


def test_segmentation_cases_group_by_dicom_patient(dicom_series_dir, tmp_path):
    from medcnn.data.segmentation import Case, case_group

    owner = _patients(dicom_series_dir, tmp_path)
    case_dirs = sorted({str(Path(f).parent) for f in owner})
    groups = {case_group(Case(id=d, images=[Path(d)])) for d in case_dirs}
    assert len(groups) == PATIENTS and all(g.startswith("patient-") for g in groups)
    png = tmp_path / "x.png"
    PILImage.fromarray(np.zeros((8, 8), np.uint8)).save(png)
    assert case_group(Case(id="x", images=[png])) == "x"
