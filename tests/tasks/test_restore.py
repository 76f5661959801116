"""Restoration pretraining of the segmentation U-Net on real MSD Hippocampus volumes, then a
segmentation run on a fraction of the labelled cases seeded from it."""
import json
import os

import numpy as np
import pytest
import torch

from medcnn.cli.main import main
from medcnn.tasks.pretrain.restoration import corrupt


def test_corruption_is_seeded_and_paints_over_part_of_the_patch():
    x = torch.randn(3, 1, 24, 32, 24)
    a, b = corrupt(x, torch.Generator().manual_seed(1)), corrupt(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == x.shape
    assert not torch.equal(a, corrupt(x, torch.Generator().manual_seed(2)))
    changed = ((a - x).abs() > 0.5).float().mean((1, 2, 3, 4))  # beyond the mild noise: painted or re-curved
    assert (changed > 0.004).all()


@pytest.fixture(scope="module")
def small_msd(hippocampus_dir, tmp_path_factory):
    """An MSD folder of 10 real labelled cases and 3 unlabelled ones (links into the data mirror)."""
    root = tmp_path_factory.mktemp("msd") / "Task04_small"
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (root / sub).mkdir(parents=True)
    meta = json.loads((hippocampus_dir / "dataset.json").read_text())
    meta["training"] = meta["training"][:10]
    for entry in meta["training"]:
        for key in ("image", "label"):
            rel = entry[key].removeprefix("./")
            os.symlink(hippocampus_dir / rel, root / rel)
    tests = sorted((hippocampus_dir / "imagesTs").iterdir())[:3]
    for f in tests:
        os.symlink(f, root / "imagesTs" / f.name)
    meta["test"] = [f"./imagesTs/{f.name}" for f in tests]
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


@pytest.fixture(scope="module")
def restore_run(small_msd, tmp_path_factory):
    run = tmp_path_factory.mktemp("ssl") / "restore"
    assert main(["pretrain", str(small_msd), "--out", str(run), "--epochs", "2", "--max-minutes", "0",
                 "--set", "segment.patches_per_epoch=18", "--no-progress"]) == 0
    return run


def test_pretraining_sees_train_and_unlabelled_images_only_and_restores_better(restore_run):
    split = json.loads((restore_run / "split.json").read_text())
    assert len(split["unlabelled"]) == 3 and len(split["train"]) + len(split["val"]) + len(split["test"]) == 10
    assert not set(split["train"]) & (set(split["val"]) | set(split["test"]))
    epochs = json.loads((restore_run / "metrics.json").read_text())["epochs"]
    val = [e["val_restoration_l1"] for e in epochs]
    assert len(val) == 2 and all(np.isfinite(val)) and val[-1] < val[0]  # the same corrupted patches each epoch
    assert (restore_run / "learning_curve.png").is_file()


def test_segmentation_on_a_label_fraction_starts_from_the_whole_pretrained_unet(restore_run, small_msd, tmp_path):
    run = tmp_path / "ft"
    assert main(["train", str(small_msd), "--out", str(run), "--epochs", "1", "--pretrained", str(restore_run),
                 "--set", "segment.patches_per_epoch=12", "--set", "max_minutes=0",
                 "--set", "segment.split.train_fraction=0.5", "--no-progress"]) == 0
    info = json.loads((run / "run.json").read_text())["pretrained"]
    assert info["loaded"] >= 30 and not info["adapted"] and info["unused"] == 0
    assert info["new"] and all("new head: 1 outputs in the source, 3 here" in why for why in info["new"].values())
    pre, ft = (json.loads((r / "split.json").read_text()) for r in (restore_run, run))
    assert ft["val"] == pre["val"] and ft["test"] == pre["test"]  # only the training cases shrink
    assert len(ft["train"]) == round(len(pre["train"]) / 2) and set(ft["train"]) < set(pre["train"])


def test_an_unknown_split_key_is_refused(small_msd, tmp_path, capsys):
    rc = main(["train", str(small_msd), "--out", str(tmp_path / "x"), "--set", "segment.split.train_fracton=0.5"])
    assert rc == 2 and "train_fracton" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_a_pretraining_run_is_not_evaluated_or_predicted(restore_run, small_msd, tmp_path, capsys):
    image = next((small_msd / "imagesTs").iterdir())
    assert main(["evaluate", str(restore_run)]) == 2
    assert main(["predict", str(restore_run), str(image), "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert err.count("a pretraining run predicts nothing") == 2 and "Traceback" not in err
