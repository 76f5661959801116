"""Real training runs on real MedMNIST files (short: a couple of epochs)."""
import json

import numpy as np
import pytest
import torch

from conftest import require
from medcnn.data.classification import load_classification
from medcnn.errors import RunFolderError
from medcnn.plan import Plan
from medcnn.planning import default_plan
from medcnn.tasks import load_model, train


def test_run_folder_contents(breast_run):
    for f in ("plan.yaml", "run.json", "metrics.json", "learning_curve.png", "train.log",
              "checkpoints/best.ckpt", "checkpoints/last.ckpt", "logs/metrics.csv"):
        assert (breast_run / f).is_file(), f
    epochs = json.loads((breast_run / "metrics.json").read_text())["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert all(e["train_loss"] > 0 and 0 <= e["val_auc"] <= 1 and 0 <= e["val_acc"] <= 1 for e in epochs)
    info = json.loads((breast_run / "run.json").read_text())
    assert info["best_val_score"] == pytest.approx(max(e["val_auc"] for e in epochs), abs=1e-6)
    best = max(epochs, key=lambda e: e["val_auc"])  # the first of equals, as the checkpoint keeps it
    assert info["best_epoch"] == best["epoch"]
    assert Plan.load(breast_run / "plan.yaml").epochs == 2


def test_best_checkpoint_is_chosen_on_validation(breast_run, breast_npz):
    pred = load_model(breast_run, "best")
    data = load_classification(str(breast_npz))
    from medcnn.metrics.classification import auc_score

    x, y = data.split("val")
    auc = auc_score(pred.predict_array(x), y, "binary")
    best = json.loads((breast_run / "run.json").read_text())["best_val_score"]
    assert auc == pytest.approx(best, abs=0.02)  # bf16 training vs fp32 inference


def test_checkpoint_loads_weights_only(breast_run):
    ckpt = torch.load(breast_run / "checkpoints" / "best.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["plan"]["task"] == "classify"


def test_existing_run_folder_is_not_overwritten(breast_run, breast_npz):
    data = load_classification(str(breast_npz))
    plan = default_plan(data, str(breast_npz))
    with pytest.raises(RunFolderError, match="--overwrite"):
        train(plan, data, breast_run)


def test_learning_on_pneumonia(medmnist_dir, tmp_path):
    """Two epochs on a real 1200-image subset must beat chance clearly on the official val set."""
    data = load_classification(str(require(medmnist_dir / "pneumoniamnist.npz")))
    data.images["train"], data.labels["train"] = data.images["train"][:1200], data.labels["train"][:1200]
    plan = default_plan(data, "pneumoniamnist").override(["epochs=2", "ensemble=1"])
    run = train(plan, data, tmp_path / "run", progress=False)
    assert json.loads((run / "run.json").read_text())["best_val_score"] > 0.85


def test_3d_training_adrenal(adrenal_run, medmnist_dir):
    model = load_model(adrenal_run)
    assert model.plan.spatial_dims == 3 and model.plan.preprocessing.input_size == [28, 28, 28]
    images = load_classification(str(require(medmnist_dir / "adrenalmnist3d.npz"))).images["val"][:5]
    probs = model.predict_array(images)
    assert probs.shape == (5, 2) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_multilabel_training(medmnist_dir, tmp_path):
    real = np.load(require(medmnist_dir / "bloodmnist.npz"))
    arrays = {}
    for s, n in (("train", 256), ("val", 128), ("test", 64)):
        arrays[f"{s}_images"] = real[f"{s}_images"][:n]
        arrays[f"{s}_labels"] = np.eye(8, dtype=np.uint8)[real[f"{s}_labels"][:n, 0]]
    np.savez(tmp_path / "blood_onehot.npz", **arrays)
    data = load_classification(str(tmp_path / "blood_onehot.npz"))
    plan = default_plan(data, str(tmp_path / "blood_onehot.npz")).override(["epochs=1", "ensemble=2"])  # multi-label ensemble
    run = train(plan, data, tmp_path / "run", progress=False)
    from medcnn.tasks import evaluate

    rep = evaluate(run, "test")
    assert 0 <= rep["auc"] <= 1 and set(rep["per_class"]) == set(plan.class_names)


def test_auto_precision_keeps_3d_classification_fp32_on_cpu():
    from medcnn.plan import Plan, Preprocessing
    from medcnn.tasks import get_task
    from medcnn.utils.precision import resolve_precision

    plan3d = Plan(spatial_dims=3, preprocessing=Preprocessing(input_size=[28, 28, 28]))
    classify, segment = get_task("classify").cpu_bf16(plan3d), get_task("segment").cpu_bf16(plan3d)
    assert resolve_precision("bf16-mixed", classify) == "bf16-mixed"  # an explicit choice is kept
    bf16_cpu = bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)())
    if not torch.cuda.is_available():
        assert resolve_precision("auto", classify) == "32"
        assert resolve_precision("auto", segment) == ("bf16-mixed" if bf16_cpu else "32")


def test_weight_averaging_is_what_validation_scores_and_the_checkpoint_keeps(breast_npz, tmp_path):
    data = load_classification(str(breast_npz))
    plan = default_plan(data, str(breast_npz)).override(["epochs=2", "ensemble=1", "tta=none", "ema_decay=0.99"])
    run = train(plan, data, tmp_path / "ema", progress=False)
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    avg, cur = ckpt["state_dict"], ckpt["current_model_state"]
    assert any(not torch.equal(avg[k], cur[k]) for k in avg if k.endswith("weight"))
    from medcnn.metrics.classification import auc_score

    x, y = data.split("val")
    auc = auc_score(load_model(run, "best").predict_array(x), y, "binary")
    assert auc == pytest.approx(json.loads((run / "run.json").read_text())["best_val_score"], abs=0.02)
