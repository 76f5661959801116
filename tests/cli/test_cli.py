"""The command line on real files: help, plan/train/evaluate/predict, one-line errors with exit code 2."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image as PILImage

from medcnn.cli.main import main
from medcnn.tasks import load_model

COMMANDS = ["fetch", "plan", "train", "evaluate", "predict", "models"]


@pytest.mark.parametrize("cmd", [None, *COMMANDS])
def test_help_everywhere(cmd, capsys):
    assert main(([cmd] if cmd else []) + ["--help"]) == 0
    text = capsys.readouterr().out
    assert "Usage" in text
    if cmd is None:
        assert "Examples" in text and all(c in text for c in COMMANDS)


def test_plan_writes_editable_yaml(breast_npz, tmp_path, capsys):
    out = tmp_path / "plan.yaml"
    assert main(["plan", str(breast_npz), "-o", str(out), "--set", "epochs=7"]) == 0
    from medcnn.plan import Plan

    p = Plan.load(out)
    assert p.epochs == 7 and p.num_classes == 2 and p.fingerprint["n"]["train"] == 546
    assert p.fingerprint["class_counts"]["train"] == {"malignant": 147, "normal, benign": 399}
    assert main(["plan", str(breast_npz), "-o", str(out)]) == 2  # exists: no silent overwrite
    assert "--overwrite" in capsys.readouterr().err


def test_train_evaluate_predict(breast_npz, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(breast_npz), "--out", str(run), "--epochs", "1", "--no-progress"]) == 0
    assert main(["evaluate", str(run), "--split", "test", "--paper"]) == 0
    text = capsys.readouterr().out
    assert "AUC" in text and "paper ResNet-18 (28)" in text
    rep = json.loads((run / "eval" / "test.json").read_text())
    assert rep["n"] == 156 and len(rep["confusion_matrix"]) == 2 and 0 <= rep["ece"] <= 1
    for name in ("auc", "acc", "ece", "brier"):  # every number with its 95 % interval
        assert rep[f"{name}_ci95"][0] <= rep[name] <= rep[f"{name}_ci95"][1]
    assert 0 <= rep["domain"]["unusual_share"] <= 0.1  # the domain check's false alarms on its own test images
    for f in ("test_confusion.png", "test_roc.png", "test_reliability.png"):
        assert (run / "eval" / f).stat().st_size > 1000

    # predict on a real test image exported as PNG: same probabilities as from the array
    x = np.load(breast_npz)["test_images"][:2]
    pngs = []
    for i, img in enumerate(x):
        PILImage.fromarray(img).save(tmp_path / f"t{i}.png")
        pngs.append(str(tmp_path / f"t{i}.png"))
    assert main(["predict", str(run), *pngs, "--json", str(tmp_path / "p.json")]) == 0
    res = json.loads((tmp_path / "p.json").read_text())["results"]

    ref = load_model(run).predict_array(x[:, None])
    got = np.array([[r["probabilities"][k] for k in ("malignant", "normal, benign")] for r in res])
    assert np.allclose(got, ref, atol=1e-5)


def test_predict_dicom_and_nifti(breast_run, tmp_path, capsys):
    """A 2D model takes a real DICOM slice and a single-slice NIfTI made from it."""
    import nibabel as nib
    from pydicom.data import get_testdata_file

    dcm = get_testdata_file("CT_small.dcm")
    import pydicom

    arr = pydicom.dcmread(dcm).pixel_array.astype(np.float32)
    nii = tmp_path / "slice.nii.gz"
    nib.save(nib.Nifti1Image(arr.T[:, :, None], np.eye(4)), nii)
    assert main(["predict", str(breast_run), dcm, str(nii), "--json", str(tmp_path / "p.json")]) == 0
    res = json.loads((tmp_path / "p.json").read_text())["results"]
    assert len(res) == 2 and all(abs(sum(r["probabilities"].values()) - 1) < 1e-4 for r in res)


def test_predict_3d_volume_with_2d_model_is_a_clear_error(breast_run, capsys):
    import nibabel.testing

    vol = os.path.join(nibabel.testing.data_path, "anatomical.nii")
    assert main(["predict", str(breast_run), vol]) == 2
    err = capsys.readouterr().err
    assert "anatomical.nii" in err and "2D" in err and len(err.strip().splitlines()) == 1


def _empty(d):
    (d / "empty").mkdir()
    return d / "empty"


def _corrupt_png_in_class_folder(d):
    for k, cls in enumerate(("a", "b")):
        (d / "ds" / cls).mkdir(parents=True)
        for i in range(3):
            (d / "ds" / cls / f"bad{3 * k + i}.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    return d / "ds"


@pytest.mark.parametrize("make, msg", [
    (_empty, "no images found"),
    (_corrupt_png_in_class_folder, "bad0.png"),
    (lambda d: d / "missing.npz", "file not found"),
    (lambda d: d / "notes.txt", "unknown dataset"),
])
def test_bad_training_input(tmp_path, capsys, make, msg):
    path = make(tmp_path)
    assert main(["train", str(path), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err


def test_run_folder_not_overwritten(breast_run, breast_npz, capsys):
    before = (breast_run / "run.json").read_text()
    assert main(["train", str(breast_npz), "--out", str(breast_run), "--epochs", "1"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (breast_run / "run.json").read_text() == before


def test_pickle_checkpoint_is_refused(tmp_path, capsys):
    """A checkpoint carrying a pickled object (code execution on load) is refused, not run."""
    import torch

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    torch.save({"state_dict": {}, "x": Payload()}, tmp_path / "run" / "checkpoints" / "best.ckpt")
    assert main(["predict", str(tmp_path / "run"), "x.png"]) == 2
    assert "refused" in capsys.readouterr().err
    assert not (tmp_path / "pwned").exists()


def test_subprocess_exit_code_and_debug(tmp_path):
    """The installed entry point: exit 2 and one line; --debug shows the traceback."""
    bad = tmp_path / "x.npz"
    bad.write_bytes(b"not a zip")
    cmd = [sys.executable, "-m", "medcnn", "train", str(bad)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().startswith("error:") and len(r.stderr.strip().splitlines()) == 1
    assert str(bad) in r.stderr
    r = subprocess.run(cmd[:3] + ["--debug"] + cmd[3:], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_fetch_offline_missing(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MEDCNN_OFFLINE", "1")
    assert main(["fetch", "pneumoniamnist_64", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "pneumoniamnist_64.npz" in err and str(tmp_path) in err


def test_3d_model_predicts_dicom_series_and_nifti(adrenal_run, dicom_series_dir, tmp_path):
    """A 3D classifier takes a real DICOM series folder and a real NIfTI volume."""
    import nibabel.testing

    run = adrenal_run
    vol = os.path.join(nibabel.testing.data_path, "anatomical.nii")
    # an MR series into a model of shapes from abdominal CT is foreign: predicted here only because asked
    assert main(["predict", str(run), str(dicom_series_dir), vol, "--allow-out-of-domain",
                 "--json", str(tmp_path / "p.json")]) == 0
    res = json.loads((tmp_path / "p.json").read_text())["results"]
    assert [r["file"] for r in res] == [str(dicom_series_dir), vol]
    assert all(r["prediction"] in ("normal", "hyperplasia") for r in res)
    assert res[0]["domain"]["verdict"] == "foreign" and "DICOM modality MR" in res[0]["domain"]["reasons"][0]


def test_evaluate_on_other_data_resizes(breast_run, breast_npz, tmp_path):
    """--data with a different image size: images are resized to the plan's input size."""
    real = np.load(breast_npz)
    arrays = {k: (np.kron(v, np.ones((1, 2, 2), dtype=v.dtype)) if k.endswith("images") else v)
              for k, v in ((k, real[k]) for k in real.files)}
    np.savez(tmp_path / "breast56.npz", **arrays)
    assert main(["evaluate", str(breast_run), "--data", str(tmp_path / "breast56.npz")]) == 0
    big = json.loads((breast_run / "eval" / "breast56-test.json").read_text())
    assert main(["evaluate", str(breast_run)]) == 0
    ref = json.loads((breast_run / "eval" / "test.json").read_text())
    assert big["n"] == ref["n"] == 156 and abs(big["auc"] - ref["auc"]) < 0.05


def test_evaluate_calibrates_and_predict_abstains(breast_run, breast_npz, tmp_path):
    assert main(["evaluate", str(breast_run)]) == 0
    rep = json.loads((breast_run / "eval" / "test.json").read_text())
    cal = rep["calibration"]
    assert cal["fitted_on"] == "val" and cal["temperature"] > 0
    assert (breast_run / "calibration.json").is_file() and (breast_run / "eval" / "test_coverage.png").is_file()
    x = np.load(breast_npz)["test_images"][:6]
    pngs = []
    for i, img in enumerate(x):
        PILImage.fromarray(img).save(tmp_path / f"c{i}.png")
        pngs.append(str(tmp_path / f"c{i}.png"))
    assert main(["predict", str(breast_run), *pngs, "--max-uncertainty", "0", "--json", str(tmp_path / "a.json")]) == 0
    res = json.loads((tmp_path / "a.json").read_text())["results"]
    assert all(r["prediction"] == "uncertain - refer" and r["abstained"] and r["calibrated"] for r in res)
    assert main(["predict", str(breast_run), *pngs, "--max-uncertainty", "1", "--json", str(tmp_path / "b.json")]) == 0
    res = json.loads((tmp_path / "b.json").read_text())["results"]
    assert not any(r.get("abstained") for r in res)


def test_unknown_option_is_a_usage_error_not_a_traceback(capsys):
    assert main(["train", "--no-such-option"]) == 2
    captured = capsys.readouterr()
    assert "No such option" in captured.err + captured.out and "Traceback" not in captured.err


@pytest.mark.parametrize("which", ["breast", "hippocampus", "enhance"])
def test_augment_preview_on_real_images(which, breast_npz, hippocampus_dir, dicom_series_dir, tmp_path, capsys):
    from PIL import Image as PILImage

    data = {"breast": breast_npz, "hippocampus": hippocampus_dir, "enhance": dicom_series_dir}[which]
    extra = {"breast": ["--augment", "heavy"], "hippocampus": ["--set", "augment.elastic=0.08"],
             "enhance": ["--degradation", "rician", "--level", "0.05"]}[which]
    png = tmp_path / "aug.png"
    assert main(["augment", str(data), "--preview", str(png), "--samples", "2", "--views", "3", *extra]) == 0
    w, h = PILImage.open(png).size
    assert w > h > 200  # 2 rows x 4 columns
    assert main(["augment", str(data), "--preview", str(png), *extra]) == 2  # never overwritten silently
    assert "--overwrite" in capsys.readouterr().err


def test_evaluate_an_external_set_whole_with_the_runs_own_calibration(breast_run, breast_npz, tmp_path):
    """An external test set (here the real test images as a CSV) is evaluated whole (--split all), its
    results do not replace the run's own, the temperature stays the run's, other classes are refused."""
    real = np.load(breast_npz)
    names = ["malignant", "normal, benign"]
    rows = ["path,label"]
    for i, (img, y) in enumerate(zip(real["test_images"][:40], real["test_labels"][:40, 0])):
        PILImage.fromarray(img).save(tmp_path / f"e{i}.png")
        rows.append(f"e{i}.png,\"{names[y]}\"")
    (tmp_path / "external.csv").write_text("\n".join(rows) + "\n")
    assert main(["evaluate", str(breast_run)]) == 0
    own = json.loads((breast_run / "eval" / "test.json").read_text())
    assert main(["evaluate", str(breast_run), "--data", str(tmp_path / "external.csv"), "--split", "all"]) == 0
    ext = json.loads((breast_run / "eval" / "external-all.json").read_text())
    assert ext["n"] == 40 and ext["calibration"]["temperature"] == own["calibration"]["temperature"]
    assert json.loads((breast_run / "eval" / "test.json").read_text()) == own  # the run's own results stay
    (tmp_path / "other.csv").write_text("\n".join(r.replace("normal, benign", "benign") for r in rows) + "\n")
    assert main(["evaluate", str(breast_run), "--data", str(tmp_path / "other.csv"), "--split", "all"]) == 2


def test_another_network_from_the_command_line(breast_npz, tmp_path):
    """`--model resnet10` keeps the planner's 28-px stem (options both networks take); the run's plan says so."""
    import yaml

    run = tmp_path / "r10"
    assert main(["train", str(breast_npz), "--model", "resnet10", "--epochs", "1", "--out", str(run),
                 "--set", "ensemble=1", "--set", "tta=none", "--no-progress"]) == 0
    model = yaml.safe_load((run / "plan.yaml").read_text())["model"]
    assert model["name"] == "resnet10" and model["kwargs"]["stem_stride"] == 1


def test_a_network_too_deep_for_the_image_size_is_one_line(breast_npz, tmp_path, capsys):
    run = tmp_path / "dn"
    assert main(["train", str(breast_npz), "--model", "densenet121", "--out", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "densenet121 cannot take [28, 28] inputs" in err and "Traceback" not in err and not run.exists()
