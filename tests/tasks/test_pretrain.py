"""Contrastive pretraining on pooled real MedMNIST images, then a classifier seeded from it."""
import json

import numpy as np
import pytest

from medcnn.cli.main import main


@pytest.fixture(scope="module")
def ssl_run(tmp_path_factory, breast_npz, medmnist_dir):
    run = tmp_path_factory.mktemp("ssl") / "ssl28"
    pneumonia = medmnist_dir / "pneumoniamnist.npz"
    assert main(["pretrain", str(breast_npz), str(pneumonia), "--out", str(run), "--epochs", "2",
                 "--max-per-source", "160", "--set", "batch_size=64", "--no-progress"]) == 0
    return run


def test_pool_uses_train_and_val_only_and_the_loss_falls(ssl_run, breast_npz, medmnist_dir):
    from medcnn.tasks.pretrain.contrastive import pooled_images

    _, counts = pooled_images([str(breast_npz), str(medmnist_dir / "pneumoniamnist.npz")], 28, 160)
    assert sorted(counts) == ["breastmnist/train", "breastmnist/val", "pneumoniamnist/train", "pneumoniamnist/val"]
    assert counts["breastmnist/val"] == 78 and counts["breastmnist/train"] == 160  # val: all 78
    epochs = json.loads((ssl_run / "metrics.json").read_text())["epochs"]
    assert len(epochs) == 2 and all(np.isfinite(e["val_contrastive"]) for e in epochs)
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    assert (ssl_run / "learning_curve.png").is_file()


def test_unlabelled_colour_photographs_pool_in_colour(data_root, breast_npz):
    """ISIC 2017's 600 test images come without labels: a folder of them pretrains in colour."""
    from conftest import require
    from medcnn.tasks.pretrain.contrastive import pooled_images

    folder = require(data_root / "isic2017_melanoma" / "test_unlabelled")
    ds, counts = pooled_images([str(folder)], 32)
    assert ds.channels == 3 and counts == {"test_unlabelled/train": 540, "test_unlabelled/val": 60}
    mixed, _ = pooled_images([str(folder), str(breast_npz)], 32, max_per_source=20)
    assert mixed.channels == 1  # a grey source: the pool is grey, unless asked
    colour, _ = pooled_images([str(folder), str(breast_npz)], 32, max_per_source=20, channels=3)
    grey = colour.images["train"][-1]
    assert colour.channels == 3 and np.array_equal(grey[0], grey[2])  # the grey images as R = G = B


def test_a_classifier_starts_from_the_pretrained_backbone(ssl_run, breast_npz, tmp_path):
    run = tmp_path / "ft"
    assert main(["train", str(breast_npz), "--out", str(run), "--epochs", "1", "--pretrained", str(ssl_run),
                 "--set", "ensemble=1", "--set", "tta=none", "--no-progress"]) == 0
    info = json.loads((run / "run.json").read_text())["pretrained"]
    assert info["loaded"] >= 100 and set(info["new"]) == {"0.mean", "0.std", "1.fc.weight", "1.fc.bias"}
    assert "128 outputs in the source" in info["new"]["1.fc.weight"]
