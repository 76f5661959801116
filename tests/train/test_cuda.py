"""Every task trains, evaluates and predicts on a CUDA GPU (skipped where there is none: CI and this
project's CPU machines; run on a lent GPU machine by bench/gpu/cuda_check.sh).

What this guards: random draws or constants made on the CPU and applied to tensors on the GPU (the
segmentation augmentation and Noise2Void validation failed that way until session 28), and the
outputs written after GPU training (evaluation, NIfTI masks on the input's grid, predictions).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medcnn.cli.main import main
from medcnn.tasks import load_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _trained_on_gpu(run) -> dict:
    info = json.loads((run / "run.json").read_text())
    assert info["device"].startswith("cuda"), info.get("device")
    return info


def test_segmentation_augmentation_runs_on_the_gpu(hippocampus_dir):
    import nibabel as nib

    from medcnn.plan import AugmentConfig
    from medcnn.transforms.seg_augment import SegAugment

    case = sorted((hippocampus_dir / "imagesTr").glob("*.nii.gz"))[0]
    img = np.asarray(nib.load(case).dataobj, dtype=np.float32)[:32, :48, :32]
    lab = np.asarray(nib.load(hippocampus_dir / "labelsTr" / case.name).dataobj, dtype=np.uint8)[:32, :48, :32]
    x = torch.from_numpy((img - img.mean()) / img.std()).expand(4, 1, *img.shape).contiguous().cuda()
    y = torch.from_numpy(lab).expand(4, 1, *lab.shape).contiguous().cuda()
    cfg = AugmentConfig(preset="heavy", p=1.0, flip=True, rotate_deg=15, scale=[0.85, 1.15], elastic=0.05,
                        brightness=0.2, contrast=0.2, blur=1.0, noise=0.1, gamma=0.3, bias_field=0.3,
                        ghosting=0.3, motion=0.05)
    xa, ya, _ = SegAugment(cfg, 3)(x.clone(), y.clone())
    assert xa.is_cuda and ya.is_cuda and xa.shape == x.shape and torch.isfinite(xa).all()
    assert set(ya.unique().tolist()) <= set(np.unique(lab).tolist())  # labels resampled nearest, never blended
    assert not torch.equal(xa, x)


def test_classification_2d_and_3d(breast_npz, medmnist_dir, tmp_path):
    from medcnn.data.classification import load_classification

    for name, npz in (("breast", breast_npz), ("adrenal", medmnist_dir / "adrenalmnist3d.npz")):
        run = tmp_path / name
        assert main(["train", str(npz), "--out", str(run), "--epochs", "2", "--set", "ensemble=1",
                     "--no-progress"]) == 0
        _trained_on_gpu(run)
        assert main(["evaluate", str(run), "--json"]) == 0
        x, _ = load_classification(str(npz)).split("test")
        probs = load_model(run, "best").predict_array(x[:4])
        assert probs.shape[0] == 4 and np.allclose(probs.sum(1), 1, atol=1e-3)


def test_segmentation_3d_train_evaluate_predict(hippocampus_dir, tmp_path):
    import nibabel as nib

    run = tmp_path / "hippo"
    assert main(["train", str(hippocampus_dir), "--out", str(run), "--epochs", "2", "--max-minutes", "0",
                 "--set", "segment.patches_per_epoch=48", "--set", "segment.val_every=2",
                 "--set", "segment.split={test_fraction: 0.04, val_fraction: 0.05, fold: null}",
                 "--no-progress"]) == 0
    info = _trained_on_gpu(run)
    assert info["best_val_score"] is not None
    assert main(["evaluate", str(run), "--json"]) == 0
    image = sorted((hippocampus_dir / "imagesTs").iterdir())[0]
    assert main(["predict", str(run), str(image), "--out", str(tmp_path / "pred")]) == 0
    masks = [p for p in (tmp_path / "pred").rglob("*.nii.gz") if "mask" in p.name or "seg" in p.name]
    assert masks, sorted(p.name for p in (tmp_path / "pred").rglob("*"))
    src, got = nib.load(image), nib.load(masks[0])
    assert got.shape == src.shape and np.allclose(got.affine, src.affine)


@pytest.mark.parametrize("kind,level", [("gaussian", "25/255"), ("rician", "0.02,0.1"), ("downsample", "2"),
                                        ("speckle", "0.1"), ("none", None)])
def test_enhancement_trains_and_predicts(kind, level, mr_dir, tmp_path):
    run = tmp_path / kind
    args = ["train", str(mr_dir), "--degradation", kind, "--out", str(run), "--epochs", "1", "--no-progress",
            "--set", "enhance.patches_per_epoch=64", "--set", "max_minutes=0"]
    assert main(args + (["--level", level] if level else [])) == 0
    _trained_on_gpu(run)
    image = sorted(mr_dir.iterdir())[0]
    assert main(["predict", str(run), str(image), "--out", str(tmp_path / f"{kind}-out")]) == 0


def test_pretraining_contrastive_and_restoration(breast_npz, hippocampus_dir, tmp_path):
    ssl = tmp_path / "ssl"
    assert main(["pretrain", str(breast_npz), "--out", str(ssl), "--epochs", "1", "--max-per-source", "256",
                 "--set", "batch_size=64", "--no-progress"]) == 0
    _trained_on_gpu(ssl)
    fine = tmp_path / "fine"
    assert main(["train", str(breast_npz), "--out", str(fine), "--epochs", "1", "--pretrained", str(ssl),
                 "--set", "ensemble=1", "--no-progress"]) == 0
    _trained_on_gpu(fine)
    rest = tmp_path / "restore"
    assert main(["pretrain", str(hippocampus_dir), "--out", str(rest), "--epochs", "1", "--max-minutes", "0",
                 "--set", "segment.patches_per_epoch=24", "--no-progress"]) == 0
    _trained_on_gpu(rest)
