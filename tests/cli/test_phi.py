"""No patient identity in anything medcnn writes or prints, unless the user asks (--keep-phi):
real DICOM files whose patient, visit and institution attributes are set go through training,
predict for every task (reports, masks, overlays, DICOM SEG, derived series) and evaluate."""
import json
import logging

import pydicom

from conftest import PHI, phi_leaks
from medcnn.cli.main import main


def test_no_phi_in_outputs_logs_or_names(breast_run, hippo_run, enhance_run, phi_series, tmp_path, capfd, caplog):
    out = tmp_path / "out"
    caplog.set_level(logging.DEBUG)
    slice_file = sorted(phi_series.glob("*.dcm"))[12]
    assert main(["predict", str(breast_run), str(slice_file), "--json", str(out / "c.json"),
                 "--results", str(out / "c.csv"), "--no-progress"]) == 0
    assert main(["predict", str(hippo_run), str(phi_series), "--out", str(out / "seg"),
                 "--json", str(out / "s.json"), "--rtstruct"]) == 0
    assert main(["predict", str(enhance_run), str(phi_series), "--out", str(out / "enh"),
                 "--results", str(out / "e.jsonl")]) == 0
    run = tmp_path / "train-on-phi"
    assert main(["train", str(phi_series.parent), "--degradation", "gaussian", "--level", "25/255", "--out", str(run),
                 "--epochs", "1", "--no-progress", "--set", "enhance.patches_per_epoch=32", "--set", "max_minutes=0"]) == 0
    printed = capfd.readouterr()
    leaks = phi_leaks([printed.out, printed.err, caplog.text], [out, run])
    assert not leaks, leaks

    seg = pydicom.dcmread(out / "seg" / "series" / "seg.dcm")  # derived objects: same study, no identity
    src = pydicom.dcmread(slice_file)
    assert seg.StudyInstanceUID == src.StudyInstanceUID and seg.PatientIdentityRemoved == "YES"
    assert seg.PatientID == "" and "OtherPatientIDs" not in seg
    rt = pydicom.dcmread(out / "seg" / "series" / "rtstruct.dcm")
    assert rt.StudyInstanceUID == src.StudyInstanceUID and rt.PatientID == "" and rt.PatientIdentityRemoved == "YES"
    derived = pydicom.dcmread(sorted((out / "enh" / "series" / "dicom").glob("*.dcm"))[0])
    assert derived.StudyInstanceUID == src.StudyInstanceUID and derived.PatientName == ""
    assert "InstitutionName" not in derived and derived.PatientIdentityRemoved == "YES"


def test_keep_phi_carries_the_identity_when_asked(breast_run, hippo_run, phi_series, tmp_path):
    out = tmp_path / "out"
    slice_file = sorted(phi_series.glob("*.dcm"))[12]
    assert main(["predict", str(breast_run), str(slice_file), "--json", str(out / "c.json"), "--keep-phi"]) == 0
    r = json.loads((out / "c.json").read_text())["results"][0]
    assert r["patient_id"] == PHI["PatientID"] and r["accession_number"] == PHI["AccessionNumber"]
    assert main(["predict", str(hippo_run), str(phi_series), "--out", str(out / "seg"), "--keep-phi", "--rtstruct"]) == 0
    for name in ("seg.dcm", "rtstruct.dcm"):
        ds = pydicom.dcmread(out / "seg" / "series" / name)
        assert ds.PatientID == PHI["PatientID"] and str(ds.PatientName) == PHI["PatientName"]
    assert phi_leaks(folders=[out])  # the scan finds what is there: the check above can fail


def test_rtstruct_is_refused_where_there_are_no_contours(breast_run, hippo_run, phi_series, hippocampus_dir, tmp_path,
                                                         capfd):
    assert main(["predict", str(breast_run), str(sorted(phi_series.glob("*.dcm"))[0]), "--rtstruct"]) == 2
    assert "--rtstruct: a classify model writes no contours" in capfd.readouterr().err
    nifti = sorted((hippocampus_dir / "imagesTs").glob("*.nii.gz"))[0]
    assert main(["predict", str(hippo_run), str(nifti), "--out", str(tmp_path / "o"), "--rtstruct"]) == 2
    assert "--rtstruct needs a DICOM series" in capfd.readouterr().err
