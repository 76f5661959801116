"""The input-domain check of a classifier, on the real BreastMNIST run and real foreign inputs."""
import json

import numpy as np
import pytest
from PIL import Image as PILImage

from medcnn.cli.main import main
from medcnn.infer.domain import FOREIGN, IN_DOMAIN, DomainModel, header_reasons
from medcnn.infer.predictor import OUT_OF_DOMAIN
from medcnn.tasks import load_model


def _pngs(npz, split, n, folder):
    folder.mkdir(parents=True, exist_ok=True)
    x = np.load(npz)[f"{split}_images"]
    paths = []
    for i in np.linspace(0, len(x) - 1, n).astype(int):
        PILImage.fromarray(x[i]).save(folder / f"{i}.png")
        paths.append(folder / f"{i}.png")
    return paths


def test_training_fits_the_domain_statistics(breast_run):
    model = DomainModel.load(breast_run / "domain.npz")
    assert model.checkpoint == "best" and model.modality == "breast ultrasound"
    # every stage of the ResNet (stem, 4 block groups: mean and spread) and the penultimate features
    assert len(model.groups) == 11 and "penultimate" in model.groups and np.isfinite(model.threshold)
    # the threshold is the 99 % quantile of the validation distances: about 1 % of them lie above it
    assert (model.val_distances > model.threshold).mean() <= 0.02


def test_foreign_inputs_are_refused_and_can_be_allowed(breast_run, breast_npz, drive_dir, dicom_series_dir, tmp_path):
    pred = load_model(breast_run)
    own = [pred.predict_file(p) for p in _pngs(breast_npz, "test", 12, tmp_path / "own")]
    assert sum(r["domain"]["verdict"] == IN_DOMAIN for r in own) >= 10
    fundus = next((drive_dir / "test" / "images").iterdir())
    mr = sorted(dicom_series_dir.glob("*.dcm"))[10]
    for path, why in ((fundus, "colour image"), (mr, "DICOM modality MR")):
        r = pred.predict_file(path)
        assert r["domain"]["verdict"] == FOREIGN and why in r["domain"]["reasons"][0], r["domain"]
        assert r["prediction"] == OUT_OF_DOMAIN and r["refused"]
        allowed = pred.predict_file(path, allow_out_of_domain=True)
        assert allowed["prediction"] in pred.plan.class_names and allowed["domain"]["verdict"] == FOREIGN


def test_look_alike_inputs_lie_further_away(breast_run, breast_npz, medmnist_dir, tmp_path):
    pred = load_model(breast_run)
    own = [pred.predict_file(p)["domain"]["distance"] for p in _pngs(breast_npz, "test", 20, tmp_path / "own")]
    xray = [pred.predict_file(p)["domain"]["distance"]
            for p in _pngs(medmnist_dir / "pneumoniamnist.npz", "test", 20, tmp_path / "xray")]
    assert np.median(xray) > np.median(own)


def test_predict_rows_carry_the_verdict(breast_run, drive_dir, tmp_path):
    fundus = next((drive_dir / "test" / "images").iterdir())
    out = tmp_path / "r.jsonl"
    assert main(["predict", str(breast_run), str(fundus), "--results", str(out), "--no-progress"]) == 0
    row = json.loads(out.read_text().splitlines()[0])
    assert row["domain"] == FOREIGN and "greyscale" in row["domain_reasons"] and row["prediction"] == OUT_OF_DOMAIN
    out.unlink()
    assert main(["predict", str(breast_run), str(fundus), "--results", str(out), "--no-progress",
                 "--allow-out-of-domain"]) == 0
    assert json.loads(out.read_text().splitlines()[0])["prediction"] != OUT_OF_DOMAIN


@pytest.mark.parametrize("code,modality,foreign", [
    ("CT", "breast ultrasound", True), ("US", "breast ultrasound", False), ("DX", "chest X-ray", False),
    ("MR", "abdominal CT", True), ("CT", "greyscale volume (CT/MR)", False), ("OT", "chest X-ray", False),
    ("CT", "", False), ("MR", "retinal OCT", True)])
def test_modality_rule(code, modality, foreign):
    assert bool(header_reasons({"modality": code}, modality)) == foreign


@pytest.mark.parametrize("name,at_least", [("resnet18", 5), ("densenet121", 4), ("efficientnet-b0", 2)])
def test_every_classifier_exposes_stages(name, at_least):
    import torch

    from medcnn.infer.domain import features, stage_modules
    from medcnn.models.registry import create_model

    net = create_model(name, 2, 1, 2).eval()
    assert len(stage_modules(net)) >= at_least
    f = features(net, torch.rand(4, 1, 64, 64))
    assert "penultimate" in f and "stage0:mean" in f and all(v.shape[0] == 4 for v in f.values())


def test_conformal_threshold_bounds_the_false_alarm_rate():
    from medcnn.infer.domain import conformal_threshold

    assert conformal_threshold(np.arange(1.0, 79.0)) == 78.0  # 78 images: the largest (bound 1/79)
    assert conformal_threshold(np.arange(1.0, 525.0)) == 520.0  # ceil(525 x 0.99) = 520th of 524
    rng = np.random.default_rng(0)
    exceed = []
    for _ in range(4000):  # a fresh image from the same distribution as 78 validation scores
        v = rng.standard_normal(79)
        exceed.append(v[78] > conformal_threshold(v[:78]))
    assert np.mean(exceed) < 0.02  # expected 1/79 = 1.27 %; the sample quantile gives about 2.2 %


def test_domain_file_keeps_distances_and_reads_the_older_format(breast_run, tmp_path):
    """Format 3 stores each precision matrix as a float32 upper triangle; format-2 files (full
    float64 matrices) written by earlier versions still load."""
    model = DomainModel.load(breast_run / "domain.npz")
    model.save(tmp_path / "d.npz")
    back = DomainModel.load(tmp_path / "d.npz")
    rng = np.random.default_rng(0)
    feats = {k: g.mean + rng.standard_normal((5, len(g.mean))) for k, g in model.groups.items()}
    np.testing.assert_allclose(back.distance(feats), model.distance(feats), rtol=1e-4)
    for g in back.groups.values():
        np.testing.assert_array_equal(g.precision, g.precision.T)
    with np.load(tmp_path / "d.npz") as z:
        arrays = {k: z[k] for k in z.files}
    d = len(model.groups["penultimate"].mean)
    names = {str(arrays[f"name_{i}"]): i for i in range(int(arrays["groups"]))}
    assert arrays[f"precision_{names['penultimate']}"].shape == (d * (d + 1) // 2,)
    for k, i in names.items():  # the same file as format 2 wrote it
        arrays[f"precision_{i}"] = model.groups[k].precision
    arrays["format"] = np.int64(2)
    np.savez(tmp_path / "old.npz", **arrays)
    np.testing.assert_allclose(DomainModel.load(tmp_path / "old.npz").distance(feats), model.distance(feats), rtol=1e-12)
