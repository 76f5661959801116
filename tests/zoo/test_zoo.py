"""The model zoo: names that cannot be mistaken for paths or weight names, entries copied and
checked before use, every entry reproducing its card, and packing that keeps a run's predictions."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medcnn import zoo
from medcnn.errors import ConfigError


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDCNN_ZOO_CACHE", str(tmp_path / "zoo-cache"))
    return tmp_path / "zoo-cache"


def test_the_zoo_has_the_first_entries_within_the_size_limits():
    assert {"breastmnist-classifier", "pneumoniamnist-classifier"} <= set(zoo.names())
    total = 0
    for name in zoo.names():
        card = zoo.card(name)
        assert card["not_for"].startswith("Research use only") and card["failure_modes"] and card["intended_use"]
        for rel, digest in card["files"].items():
            path = zoo.ZOO_DIR / name / rel
            assert zoo.sha256(path) == digest and path.stat().st_size <= 10 * 2**20
            total += path.stat().st_size
        lo, hi = card["original"][f"{card['test']['metric']}_ci95"]
        assert lo <= card["test"]["value"] <= hi  # packing stayed inside the source's interval
    assert total <= 50 * 2**20


def test_names_are_never_paths_or_weight_names(tmp_path, monkeypatch):
    for ref in ("squeezenet1_1.imagenet", "ResNet18_Weights.IMAGENET1K_V1", "runs/breastmnist-classifier",
                "breastmnist", "Breastmnist-Classifier"):
        assert zoo.zoo_name(ref) is None
    assert zoo.zoo_name("breastmnist-classifier") == "breastmnist-classifier"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "breastmnist-classifier").mkdir()  # a folder of the same name here wins ...
    assert zoo.zoo_name("breastmnist-classifier") is None
    assert zoo.zoo_name("zoo:breastmnist-classifier") == "breastmnist-classifier"  # ... unless zoo: is said
    with pytest.raises(ConfigError, match="no zoo model 'nope'"):
        zoo.zoo_name("zoo:nope")


def test_an_entry_is_used_from_a_checked_copy(cache):
    run = zoo.resolve("breastmnist-classifier")
    assert run == cache / "breastmnist-classifier" and (run / "plan.yaml").is_file()
    ckpt = run / "checkpoints" / "best.ckpt"
    ckpt.write_bytes(b"damaged")
    assert zoo.resolve("zoo:breastmnist-classifier") == run
    assert zoo.sha256(ckpt) == zoo.card("breastmnist-classifier")["files"]["checkpoints/best.ckpt"]


def test_a_zoo_model_predicts_from_the_command_line_without_training(medmnist_dir, tmp_path):
    from PIL import Image

    data = np.load(medmnist_dir / "pneumoniamnist.npz")
    png = tmp_path / "chest.png"
    Image.fromarray(data["test_images"][0]).save(png)
    done = subprocess.run([sys.executable, "-m", "medcnn", "predict", "pneumoniamnist-classifier", str(png),
                           "--json", str(tmp_path / "out.json")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = json.loads((tmp_path / "out.json").read_text())["results"]
    assert set(row["probabilities"]) == {"normal", "pneumonia"} and row["domain"]["verdict"] == "in-domain"


@pytest.mark.slow
@pytest.mark.parametrize("name", zoo.names())
def test_every_zoo_model_reproduces_its_card(name, medmnist_dir):
    from medcnn.data.fetch import data_root
    from medcnn.tasks import evaluate

    card = zoo.card(name)
    test = card["test"]  # the run's test split, or other data of the data root (a challenge's official set)
    split = test.get("split", "test")
    if test.get("check", {}).get("probabilities"):  # a classifier's first test images, each as on the card
        _reproduces_its_check_images(name, test["check"])
    elif test.get("check"):  # scoring the whole split takes minutes: the named cases, each as on the card
        evaluate(f"zoo:{name}", split, cases=list(test["check"]["cases"]))
        with open(zoo.resolve(zoo.PREFIX + name) / "eval" / f"{split}-subset_cases.csv", newline="") as fh:
            rows = {r["case"]: r for r in csv.DictReader(fh)}
        for case, scores in test["check"]["cases"].items():
            assert {k: float(rows[case][k]) for k in scores} == pytest.approx(scores, abs=2e-4), case
    else:
        data = str(data_root() / test["data"]) if test.get("data") else None
        # an enhancement card's metric is medcnn's own PSNR: the classical baselines (BM3D: seconds per
        # slice) are left out; the noise of each slice is drawn from the same seed either way
        only_medcnn = {"methods": ["medcnn"]} if card["task"] == "enhance" else {}
        report = evaluate(f"zoo:{name}", split, data=data, **only_medcnn)
        metric = test["metric"]
        assert report[metric] == pytest.approx(test["value"], abs=2e-4)
        assert report[f"{metric}_ci95"] == pytest.approx(test["ci95"], abs=2e-4)
    for rel, digest in card["files"].items():  # evaluation wrote into the copy, never into the package
        assert zoo.sha256(zoo.ZOO_DIR / name / rel) == digest


def _reproduces_its_check_images(name: str, check: dict) -> None:
    """The card's probabilities of the first test images, predicted in the batch ``evaluate`` put them in
    (the card's metric is computed from the whole split's probabilities, these among them)."""
    import torch

    from medcnn.data.classification import load_classification
    from medcnn.infer.predictor import probabilities
    from medcnn.tasks import load_model

    pred = load_model(f"zoo:{name}")
    pre = pred.plan.preprocessing
    ds = load_classification(pred.plan.data, input_size=pre.input_size, channels=pre.channels,
                             normalization=pre.normalization, seed=pred.plan.seed)
    images, _ = ds.split(check["split"])
    logits = pred.predict_logits(images[: check["batch"]], batch_size=check["batch"])
    got = probabilities(torch.from_numpy(logits), pred.plan.label_type).numpy()[: check["first"]]
    assert got == pytest.approx(np.asarray(check["probabilities"]), abs=2e-4)


def test_packing_keeps_the_predictions_of_the_first_member(breast_run, breast_npz, tmp_path):
    from medcnn.data.classification import load_classification
    from medcnn.runs import RunFolder
    from medcnn.tasks import load_model
    from medcnn.zoo.pack import pack_run, shipped_files

    packed = pack_run(breast_run, tmp_path / "packed", data="breastmnist")
    plan = RunFolder(packed).plan()
    assert plan.ensemble == 1 and plan.data == "breastmnist"
    assert {"plan.yaml", "run.json", "checkpoints/best.ckpt"} <= set(shipped_files(packed))
    x, _ = load_classification(str(breast_npz)).split("test")
    top = RunFolder(breast_run).plan()
    first = RunFolder(breast_run).members(top.ensemble)[0].path if top.ensemble > 1 else Path(breast_run)
    ref, got = load_model(first), load_model(packed)
    ref.temperature = got.temperature = 1.0  # the networks compared (other tests may have calibrated the run)
    assert np.abs(ref.predict_array(x[:64]) - got.predict_array(x[:64])).max() < 0.02  # float16 weights


def test_int8_packing_quarters_the_weights_and_keeps_the_predictions(breast_run, breast_npz, tmp_path):
    """A network too large for float16 ships int8 kernels with a scale per output channel."""
    import torch

    from medcnn.data.classification import load_classification
    from medcnn.runs import SCALE_SUFFIX, load_checkpoint
    from medcnn.tasks import load_model
    from medcnn.zoo.pack import pack_run

    half = pack_run(breast_run, tmp_path / "half", data="breastmnist")
    small = pack_run(breast_run, tmp_path / "int8", data="breastmnist", dtype=torch.int8)
    state = load_checkpoint(small / "checkpoints" / "best.ckpt")["state_dict"]
    kernels = [k for k, v in state.items() if v.dtype == torch.int8]
    assert kernels and all(k + SCALE_SUFFIX in state for k in kernels)
    size = lambda run: (run / "checkpoints" / "best.ckpt").stat().st_size  # noqa: E731
    assert size(small) < 0.6 * size(half)
    x, _ = load_classification(str(breast_npz)).split("test")
    a, b = load_model(half), load_model(small)
    a.temperature = b.temperature = 1.0
    assert np.abs(a.predict_array(x[:64]) - b.predict_array(x[:64])).max() < 0.05
    # packed again (a shipped entry re-packed): the same tensors, still naming the run it came from
    again = pack_run(small, tmp_path / "again", dtype=torch.int8)
    state2 = load_checkpoint(again / "checkpoints" / "best.ckpt")["state_dict"]
    assert state2.keys() == state.keys() and all(torch.equal(state[k], state2[k]) for k in state)
    origin = lambda run: json.loads((run / "run.json").read_text())["packed_from"]  # noqa: E731
    assert origin(again) == origin(small) and origin(small)["command"] and origin(small)["ensemble"] >= 1


def test_a_zoo_model_is_a_pretrained_source():
    from medcnn.transfer.weights import resolve_source

    path = resolve_source("zoo:breastmnist-classifier")
    assert path.name == "best.ckpt" and path.parent.parent.name == "breastmnist-classifier"


def test_train_fine_tunes_a_zoo_model(breast_npz, tmp_path):
    out = tmp_path / "ft"
    done = subprocess.run([sys.executable, "-m", "medcnn", "train", str(breast_npz), "--pretrained", "breastmnist-classifier",
                           "--epochs", "1", "--set", "ensemble=1", "--out", str(out), "--no-progress"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((out / "run.json").read_text())["pretrained"]
    assert report["loaded"] > 50 and "breastmnist-classifier" in report["file"]


def test_a_packed_segmenter_keeps_its_split_and_its_masks(hippo_run, hippocampus_dir, tmp_path):
    from medcnn.io import read_image
    from medcnn.runs import RunFolder
    from medcnn.tasks import load_model
    from medcnn.zoo.pack import pack_run, shipped_files

    packed = pack_run(hippo_run, tmp_path / "packed", data="msd-hippocampus")
    assert "split.json" in shipped_files(packed) and RunFolder(packed).split() == RunFolder(hippo_run).split()
    image = read_image(sorted((hippocampus_dir / "imagesTs").glob("*.nii.gz"))[0])
    ref, got = load_model(hippo_run), load_model(packed)
    ref.bf16 = got.bf16 = False
    assert float((ref.probabilities(image) - got.probabilities(image)).abs().max()) < 0.02  # float16 weights
