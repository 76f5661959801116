"""`medcnn export --format monai-bundle`: a bundle MONAI alone verifies and runs, giving what
`medcnn predict` gives."""
import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from medcnn.cli.main import main

pytest.importorskip("ignite")  # MONAI's bundle workflows run on pytorch-ignite

# the mandatory keys of metadata.json and of each tensor format, from MONAI's bundle specification
SPEC_KEYS = ("version", "monai_version", "pytorch_version", "numpy_version", "optional_packages_version", "task",
             "description", "authors", "copyright", "network_data_format")
TENSOR_KEYS = ("type", "format", "modality", "num_channels", "spatial_shape", "dtype", "value_range", "is_patch_data",
               "channel_def")


def _verify(bundle):
    from monai.bundle import verify_net_in_out

    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert all(k in meta for k in SPEC_KEYS)
    fmt = meta["network_data_format"]
    for spec in (*fmt["inputs"].values(), *fmt["outputs"].values()):
        assert all(k in spec for k in TENSOR_KEYS if k != "modality" or spec is fmt["inputs"]["image"])
    verify_net_in_out(net_id="network_def", meta_file=str(bundle / "configs" / "metadata.json"),
                      config_file=str(bundle / "configs" / "inference.json"), device="cpu", bundle_root=str(bundle))
    return meta


def test_a_classifier_bundle_runs_in_monai_and_predicts_like_medcnn(tmp_path, medmnist_dir, monkeypatch):
    from monai.bundle import run as bundle_run

    from medcnn import zoo

    monkeypatch.setenv("MEDCNN_ZOO_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "breast"
    shutil.copytree(zoo.resolve("breastmnist-classifier"), run)
    assert main(["export", str(run), "--format", "monai-bundle"]) == 0
    bundle = run / "export" / "monai_bundle"
    meta = _verify(bundle)
    assert meta["network_data_format"]["outputs"]["pred"]["channel_def"] == {"0": "malignant", "1": "normal, benign"}
    assert (bundle / "models" / "model.pt").is_file() and (bundle / "docs" / "README.md").is_file()

    images = tmp_path / "images"
    images.mkdir()
    test = np.load(medmnist_dir / "breastmnist.npz")["test_images"]
    for i in range(4):
        Image.fromarray(test[i]).save(images / f"case{i}.png")
    bundle_run(config_file=str(bundle / "configs" / "inference.json"), bundle_root=str(bundle),
               dataset_dir=str(images), output_dir=str(tmp_path / "monai_out"))
    with open(tmp_path / "monai_out" / "predictions.csv") as f:
        monai_probs = {row[0].rsplit("/", 1)[-1]: [float(v) for v in row[1:]] for row in csv.reader(f)}
    # medcnn's own predictor in float32: the same numbers; `medcnn predict` (bfloat16): within 5e-3
    from medcnn.tasks import load_model

    fp32 = load_model(run)
    fp32.bf16 = False
    for r in fp32.predict_files(sorted(images.glob("*.png"))):
        assert monai_probs[r["file"].rsplit("/", 1)[-1]] == pytest.approx(list(r["probabilities"].values()), abs=1e-4)
    assert main(["predict", str(run), str(images), "--json", str(tmp_path / "medcnn.json")]) == 0
    for r in json.loads((tmp_path / "medcnn.json").read_text())["results"]:
        assert monai_probs[r["file"].rsplit("/", 1)[-1]] == pytest.approx(list(r["probabilities"].values()), abs=5e-3)


def test_segmentation_and_enhancement_bundles_verify(hippo_run, enhance_run, tmp_path):
    from medcnn.export.monai_bundle import export_bundle

    for src in (hippo_run, enhance_run):
        run = tmp_path / src.name
        shutil.copytree(src, run, ignore=shutil.ignore_patterns("export", "predictions"))
        rec = export_bundle(run)
        assert rec["parity"]["ok"]
        meta = _verify(run / "export" / "monai_bundle")
        out = meta["network_data_format"]["outputs"]["pred"]
        assert out["format"] == ("labels" if meta["medcnn"]["plan"]["task"] == "segment" else "magnitude")
