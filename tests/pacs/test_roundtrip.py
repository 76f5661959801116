"""A PACS round trip against a real Orthanc: the TCIA MR series stored over DICOMweb, a study
predicted by `medcnn predict --dicomweb`, the results stored back into it and read back."""
import json
import shutil

import pydicom
import pytest

from .conftest import PASSWORD, USER


@pytest.fixture()
def pacs_env(orthanc, monkeypatch):
    url, user, password = orthanc
    monkeypatch.setenv("MEDCNN_DICOMWEB_USER", user)
    monkeypatch.setenv("MEDCNN_DICOMWEB_PASSWORD", password)
    return url


def _store_study(url, series_dir, description="medcnn test", drop=None):
    """The TCIA series under a new study (new Study / Series / SOP UIDs), stored with STOW-RS; without
    its ``drop``-th file if given."""
    from pydicom.uid import generate_uid

    from medcnn.pacs.client import Pacs

    study_uid, series_uid = generate_uid(), generate_uid()
    datasets = []
    for i, f in enumerate(sorted(series_dir.glob("*"))):
        if i == drop:
            continue
        ds = pydicom.dcmread(f)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.StudyDescription = study_uid, series_uid, description
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        datasets.append(ds)
    Pacs(url).store(datasets, study_uid)
    return study_uid, series_uid, len(datasets)


PATIENT = "Doe^Jane^PACS"


def _store_volume(url, nifti, tmp_path, description="medcnn test"):
    """A NIfTI volume (e.g. a small MSD Hippocampus one) written as a new DICOM series in a new study
    (medcnn.io.dicom_write) and stored with STOW-RS: (study UID, series UID)."""
    from medcnn.io import read_image
    from medcnn.io.dicom_write import write_dicom_series
    from medcnn.pacs.client import Pacs

    folder = tmp_path / f"volume-{len(list(tmp_path.glob('volume-*')))}"
    datasets = [pydicom.dcmread(f) for f in write_dicom_series(read_image(nifti), folder)]
    for ds in datasets:
        ds.StudyDescription, ds.PatientName, ds.PatientID = description, PATIENT, "PACS-TEST-ID"
    Pacs(url).store(datasets, datasets[0].StudyInstanceUID)
    return datasets[0].StudyInstanceUID, datasets[0].SeriesInstanceUID


@pytest.fixture()
def study(pacs_env, dicom_series_dir):
    return _store_study(pacs_env, dicom_series_dir)


def _cli(*args):
    """`medcnn ARGS` in this process (no interpreter start per call): its exit status and output."""
    import contextlib
    import io
    from types import SimpleNamespace

    from medcnn.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def test_a_segmentation_comes_back_as_a_dicom_seg_in_the_study(hippo_run, pacs_env, study, tmp_path, dicom_series_dir):
    from medcnn.pacs.client import Pacs
    from medcnn.pacs.roundtrip import image_series

    study_uid, series_uid, n = study
    run = tmp_path / "hippo"
    shutil.copytree(hippo_run, run, ignore=shutil.ignore_patterns("export", "predictions"))
    done = _cli("predict", str(run), "--dicomweb", pacs_env, "--study", study_uid)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "stored SEG series" in " ".join(done.stdout.split())
    pacs = Pacs(pacs_env)
    modalities = {s["00080060"]["Value"][0] for s in pacs.series_of(study_uid)}
    assert modalities == {"MR", "SEG", "SR"}
    assert image_series(pacs, study_uid) == [series_uid]  # the SEG is not an image series to predict again
    (seg_series,) = [s["0020000E"]["Value"][0] for s in pacs.series_of(study_uid) if s["00080060"]["Value"][0] == "SEG"]
    (seg,) = pacs.client.retrieve_series(study_uid, seg_series)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series_uid
    assert seg.StudyInstanceUID == study_uid and len(seg.SegmentSequence) >= 1

    # the report's volumes are those of the stored SEG, read back onto the series (medcnn.io.dicom_seg)
    from medcnn.io import read_image
    from medcnn.io.dicom_seg import read_dicom_seg
    from medcnn.io.dicom_sr import read_volumes
    from medcnn.measure.components import measure
    from medcnn.tasks import load_model

    (sr_series,) = [s["0020000E"]["Value"][0] for s in pacs.series_of(study_uid) if s["00080060"]["Value"][0] == "SR"]
    (sr,) = pacs.client.retrieve_series(study_uid, sr_series)
    assert sr.CurrentRequestedProcedureEvidenceSequence[0].StudyInstanceUID == study_uid
    names = dict(enumerate(load_model(run).plan.class_names))
    label = read_dicom_seg(seg, read_image(pacs.fetch_series(study_uid, series_uid, tmp_path / "fetched")), names)
    sizes = {m.name: m.size_mm for m in measure(label, label_names=names, labels=list(names)[1:])}
    assert read_volumes(sr) == pytest.approx(sizes, rel=1e-6)


def test_a_classification_comes_back_as_a_structured_report(pacs_env, study, tmp_path, monkeypatch):
    from medcnn.io.dicom_sr import read_findings
    from medcnn.pacs.client import Pacs

    monkeypatch.setenv("MEDCNN_ZOO_CACHE", str(tmp_path / "zoo"))
    study_uid, series_uid, n = study
    done = _cli("predict", "pneumoniamnist-classifier", "--dicomweb", pacs_env, "--study", study_uid)
    assert done.returncode == 0, done.stderr[-3000:]
    pacs = Pacs(pacs_env)
    (sr_series,) = [s["0020000E"]["Value"][0] for s in pacs.series_of(study_uid) if s["00080060"]["Value"][0] == "SR"]
    (sr,) = pacs.client.retrieve_series(study_uid, sr_series)
    findings = read_findings(sr)
    assert len(findings) == n
    for label, prob in findings:  # an MR slice is not a chest X-ray: refused, or predicted with its probability
        assert (prob is None) or (label in {"normal", "pneumonia"} and 0.5 <= prob <= 1)


def test_an_enhancement_comes_back_as_a_derived_series(enhance_run, pacs_env, study, tmp_path):
    from medcnn.pacs.client import Pacs

    study_uid, series_uid, n = study
    done = _cli("predict", str(enhance_run), "--dicomweb", pacs_env, "--study", study_uid, "--series", series_uid)
    assert done.returncode == 0, done.stderr[-3000:]
    pacs = Pacs(pacs_env)
    new = [s["0020000E"]["Value"][0] for s in pacs.series_of(study_uid) if s["0020000E"]["Value"][0] != series_uid]
    assert len(new) == 1
    derived = pacs.client.retrieve_series(study_uid, new[0])
    source = pacs.client.retrieve_series(study_uid, series_uid)
    assert len(derived) == len(source) == n
    assert "DERIVED" in derived[0].ImageType
    by_pos = {tuple(map(float, d.ImagePositionPatient)): d for d in derived}
    for s in source:  # same geometry, new UIDs
        d = by_pos[tuple(map(float, s.ImagePositionPatient))]
        assert d.SOPInstanceUID != s.SOPInstanceUID and list(d.PixelSpacing) == list(s.PixelSpacing)


def test_faults_are_one_line_with_their_own_exit_status(hippo_run, orthanc, study, dicom_series_dir, monkeypatch):
    from medcnn.pacs.client import Pacs

    url, _, _ = orthanc
    study_uid = study[0]
    monkeypatch.setenv("MEDCNN_DICOMWEB_PASSWORD", "wrong")
    done = _cli("predict", str(hippo_run), "--dicomweb", url, "--study", study_uid)
    assert done.returncode == 3 and "refused the credentials" in done.stderr and "Traceback" not in done.stderr
    monkeypatch.setenv("MEDCNN_DICOMWEB_PASSWORD", PASSWORD)
    done = _cli("predict", str(hippo_run), "--dicomweb", url, "--study", "1.2.3.4.5")
    assert done.returncode == 2 and "study 1.2.3.4.5: not found" in done.stderr
    gappy, _, _ = _store_study(url, dicom_series_dir, drop=12)  # a slice missing in the middle: refused, nothing stored
    done = _cli("predict", str(hippo_run), "--dicomweb", url, "--study", gappy)
    assert done.returncode == 2 and f"study {gappy}" in done.stderr and "missing slices" in done.stderr
    assert len(Pacs(url).series_of(gappy)) == 1
    monkeypatch.setenv("MEDCNN_DICOMWEB_ATTEMPTS", "1")  # no back-off: fail at once
    done = _cli("predict", str(hippo_run), "--dicomweb", "http://127.0.0.1:9/dicom-web", "--study", study_uid)
    assert done.returncode == 3 and "unreachable" in done.stderr
    assert USER not in done.stderr


def test_a_batch_over_a_query_stores_each_study_once(hippo_run, pacs_env, mr_dir, tmp_path):
    from pydicom.uid import generate_uid

    from medcnn.pacs.client import Pacs

    tag = f"batch{generate_uid()[-12:]}"
    studies = [_store_volume(pacs_env, f, tmp_path, tag)[0] for f in sorted(mr_dir.glob("*.nii.gz"))[:2]]
    run = tmp_path / "hippo"
    shutil.copytree(hippo_run, run, ignore=shutil.ignore_patterns("export", "predictions"))
    first = _cli("predict", str(run), "--dicomweb", pacs_env, "--query", f"StudyDescription={tag}")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "2 studies: 2 stored, 0 skipped, 0 failed" in " ".join(first.stdout.split())
    pacs = Pacs(pacs_env)
    counts = {s: len(pacs.series_of(s)) for s in studies}
    assert set(counts.values()) == {3}  # MR, SEG, SR
    again = _cli("predict", str(run), "--dicomweb", pacs_env, "--query", f"StudyDescription={tag}")
    assert again.returncode == 0 and "2 studies: 0 stored, 2 skipped" in " ".join(again.stdout.split())
    assert {s: len(pacs.series_of(s)) for s in studies} == counts


def test_an_in_domain_image_gets_its_finding_and_probability(pacs_env, medmnist_dir, tmp_path, monkeypatch):
    import numpy as np

    from medcnn.io.dicom_sr import read_findings
    from medcnn.io.dicom_write import write_dicom_series
    from medcnn.io.image import Image
    from medcnn.pacs.client import Pacs
    from medcnn.tasks import load_model

    monkeypatch.setenv("MEDCNN_ZOO_CACHE", str(tmp_path / "zoo"))
    x = np.load(medmnist_dir / "pneumoniamnist.npz")["test_images"][:1].astype(np.float32)  # (1, 28, 28)
    files = write_dicom_series(Image.from_spacing(x), tmp_path / "xray", modality="CR")
    ds = pydicom.dcmread(files[0])
    Pacs(pacs_env).store([ds], ds.StudyInstanceUID)
    done = _cli("predict", "pneumoniamnist-classifier", "--dicomweb", pacs_env, "--study", ds.StudyInstanceUID)
    assert done.returncode == 0, done.stderr[-3000:]
    pacs = Pacs(pacs_env)
    (sr_series,) = [s["0020000E"]["Value"][0] for s in pacs.series_of(ds.StudyInstanceUID)
                    if s["00080060"]["Value"][0] == "SR"]
    ((label, prob),) = read_findings(pacs.client.retrieve_series(ds.StudyInstanceUID, sr_series)[0])
    (expected,) = load_model("pneumoniamnist-classifier").predict_files(files)
    assert label == expected["prediction"] and prob == pytest.approx(expected["confidence"], abs=1e-6)


def test_a_volume_written_as_dicom_comes_back_with_seg_rtstruct_and_volumes(hippo_run, pacs_env, mr_dir, tmp_path):
    """A hippocampus MR volume (real 1 mm spacing) written as a DICOM series by medcnn's writer, through
    the PACS with --rtstruct: the report's volumes equal `medcnn measure` on the mask predicted from the
    NIfTI itself, and the RTSTRUCT's contours rasterised back give that mask (stated tolerance: Dice
    >= 0.99 per label; medcnn.io.dicom_rtstruct)."""
    import numpy as np

    from medcnn.cli.main import main
    from medcnn.io import read_image
    from medcnn.io.dicom_rtstruct import read_rtstruct
    from medcnn.io.dicom_sr import read_volumes
    from medcnn.io.dicom_write import write_dicom_series
    from medcnn.pacs.client import Pacs
    from medcnn.tasks import load_model

    nifti = sorted(mr_dir.glob("*.nii.gz"))[0]
    files = write_dicom_series(read_image(nifti), tmp_path / "series", modality="MR")
    datasets = [pydicom.dcmread(f) for f in files]
    study_uid, series_uid = datasets[0].StudyInstanceUID, datasets[0].SeriesInstanceUID
    pacs = Pacs(pacs_env)
    pacs.store(datasets, study_uid)
    run = tmp_path / "hippo"
    shutil.copytree(hippo_run, run, ignore=shutil.ignore_patterns("export", "predictions"))
    done = _cli("predict", str(run), "--dicomweb", pacs_env, "--study", study_uid, "--rtstruct")
    assert done.returncode == 0, done.stderr[-3000:]
    by_modality = {s["00080060"]["Value"][0]: s["0020000E"]["Value"][0] for s in pacs.series_of(study_uid)}
    assert set(by_modality) == {"MR", "SEG", "SR", "RTSTRUCT"}

    assert main(["predict", str(run), str(nifti), "--out", str(tmp_path / "local"), "--no-progress"]) == 0
    (mask_file,) = (tmp_path / "local").rglob("mask.nii.gz")
    names = load_model(run).plan.class_names
    measured = main(["measure", str(mask_file), "--json", str(tmp_path / "m.json")]
                    + [f"--name={i}={n}" for i, n in enumerate(names) if i]) == 0
    assert measured
    expected = {m["name"]: m["size_mm"] for m in json.loads((tmp_path / "m.json").read_text())["labels"]}
    (sr,) = pacs.client.retrieve_series(study_uid, by_modality["SR"])
    assert read_volumes(sr) == pytest.approx(expected, rel=1e-6) and sum(expected.values()) > 0

    (rt,) = pacs.client.retrieve_series(study_uid, by_modality["RTSTRUCT"])
    ref = rt.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert ref.SeriesInstanceUID == series_uid and rt.StudyInstanceUID == study_uid
    rt.save_as(tmp_path / "rt.dcm")
    mask = read_image(mask_file).array[0]
    back = read_rtstruct(tmp_path / "rt.dcm", read_image(tmp_path / "series"), dict(enumerate(names))).array[0]
    for k in range(1, len(names)):
        a, b = mask == k, back == k
        assert 2 * np.sum(a & b) / (a.sum() + b.sum()) >= 0.99, names[k]


def test_a_store_the_server_takes_only_partly_fails_and_the_study_is_not_done(hippo_run, picky_orthanc, mr_dir,
                                                                             tmp_path, monkeypatch):
    from medcnn.pacs.client import Pacs
    from medcnn.pacs.roundtrip import done_by, model_version

    url, user, password = picky_orthanc
    monkeypatch.setenv("MEDCNN_DICOMWEB_USER", user)
    monkeypatch.setenv("MEDCNN_DICOMWEB_PASSWORD", password)
    study_uid, _ = _store_volume(url, sorted(mr_dir.glob("*.nii.gz"))[0], tmp_path)
    done = _cli("predict", str(hippo_run), "--dicomweb", url, "--study", study_uid)
    assert done.returncode == 3 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert f"study {study_uid}: the server kept 1 of 2" in " ".join(done.stderr.split())
    assert not done_by(Pacs(url), study_uid, model_version(hippo_run, "best")[1])  # a batch would redo it


def test_a_three_sequence_model_takes_its_series_as_channels(lgg_run, pacs_env, tmp_path):
    """LGG (pre-contrast, FLAIR, post-contrast): a patient's three sequences written as three DICOM series
    of one study; with --series given in channel order they are one case, and the report's volume is
    what the same model measures on the patient's three NIfTI files. Without --series: refused."""
    from medcnn.data.segmentation import load_segmentation
    from medcnn.errors import InputError
    from medcnn.io import read_image
    from medcnn.io.dicom_sr import read_volumes
    from medcnn.io.dicom_write import write_dicom_series
    from medcnn.pacs.client import Pacs
    from medcnn.pacs.roundtrip import predict_study
    from medcnn.tasks.jobs import predict_job

    run, root = lgg_run
    data = load_segmentation(root)
    files = [root / "imagesTr" / f"{data.cases[0].id}_{k:04d}.nii.gz" for k in range(3)]
    study_uid = pydicom.uid.generate_uid()
    series = []
    pacs = Pacs(pacs_env)
    for k, f in enumerate(files):
        written = [pydicom.dcmread(p) for p in write_dicom_series(read_image(f), tmp_path / f"s{k}", study_uid=study_uid)]
        pacs.store(written, study_uid)
        series.append(written[0].SeriesInstanceUID)
    with pytest.raises(InputError, match="give --series 3 times"):
        predict_study(run, pacs_env, study_uid)
    done = predict_study(run, pacs_env, study_uid, series)
    assert done["series"] == series and {s["modality"] for s in done["stored"].values()} == {"SEG", "SR"}
    (sr_uid,) = [uid for uid, s in done["stored"].items() if s["modality"] == "SR"]
    (seg_uid,) = [uid for uid, s in done["stored"].items() if s["modality"] == "SEG"]
    (seg,) = pacs.client.retrieve_series(study_uid, seg_uid)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series[0]
    local = predict_job(run).one(files[0], tmp_path / "local")
    assert sum(local["sizes"].values()) > 0
    assert read_volumes(pacs.client.retrieve_series(study_uid, sr_uid)[0]) == pytest.approx(local["sizes"], rel=1e-6)
