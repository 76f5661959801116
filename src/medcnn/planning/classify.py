"""Dataset fingerprint -> default plan (the rules nnU-Net's planner taught: decide from data).

The fingerprint records what the data is; the plan records what to do with it. Both go into
the plan YAML that ``medcnn plan`` writes, so a user can read why a choice was made and edit it.
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np

from medcnn.data.classification import SPLITS, ClassificationData
from medcnn.data.groups import duplicates_across_splits
from medcnn.plan import ModelConfig, OptimConfig, Plan, Preprocessing, augment_preset

# Training budget in samples seen: epochs = budget / train size, clipped to EPOCHS; a dataset so
# small that the epoch cap leaves budget over spends it on an ensemble of up to MAX_MEMBERS
# models (seeds seed, seed+1000, ...), which steadies the noisy checkpoint choice of tiny val sets.
SAMPLE_BUDGET = {2: 150_000, 3: 20_000}
EPOCHS = (10, 50)
MAX_MEMBERS = 5
MULTICLASS_MEMBERS = 2  # multi-class tasks: at least two members (see members_for)
SMALL_TRAIN = 500  # training sets up to this size get the "default" augmentation preset, larger "light"


def fingerprint(data: ClassificationData) -> dict[str, Any]:
    x = data.images["train"]
    sample = x[np.linspace(0, len(x) - 1, min(len(x), 2000)).astype(int)].astype(np.float32)
    if x.dtype == np.uint8:
        sample /= 255.0
    axes = (0,) + tuple(range(2, sample.ndim))
    counts = {}
    for s in SPLITS:
        if s in data.labels:
            y = data.labels[s]
            c = y.sum(0) if data.label_type == "multilabel" else np.bincount(y, minlength=data.num_classes)
            counts[s] = {name: int(v) for name, v in zip(data.class_names, c)}
    return {
        "name": data.name,
        "source": data.source,
        "modality": data.modality or _guess_modality(data),
        "label_type": data.label_type,
        "num_classes": data.num_classes,
        "class_names": data.class_names,
        "n": {s: int(len(v)) for s, v in data.labels.items()},
        "spatial_dims": data.spatial_dims,
        "channels": data.channels,
        "size": list(x.shape[2:]),
        "spacing_mm": data.spacing,
        "dtype": str(x.dtype),
        "intensity": {
            "mean": [round(float(v), 4) for v in sample.mean(axis=axes)],
            "std": [round(float(v), 4) for v in sample.std(axis=axes)],
            "p0.5": round(float(np.percentile(sample, 0.5)), 4),
            "p99.5": round(float(np.percentile(sample, 99.5)), 4),
        },
        "class_counts": counts,
        "duplicates_across_splits": duplicates_across_splits(data.images),
    }


def _guess_modality(data: ClassificationData) -> str:
    if data.channels == 3:
        return "colour image (photograph / microscopy / dermoscopy)"
    return "greyscale volume (CT/MR)" if data.spatial_dims == 3 else "greyscale image (X-ray / ultrasound / CT slice)"


def model_for(spatial_dims: int, size: int) -> ModelConfig:
    """2D: a half-width ResNet-18 whose first stage sees at most 32x32 -- at 28 px a stride-1 stem
    (full resolution, as the MedMNIST paper's network) at half width trains 1.3x faster than the
    full-width stride-2 stem and is more accurate (bench/results/EXPERIMENTS.md)."""
    if spatial_dims == 3:
        return ModelConfig("resnet10", {"stem_stride": 2, "stem_kernel": 3, "max_pool": size > 32})
    if size <= 32:
        return ModelConfig("resnet18", {"stem_stride": 1, "stem_kernel": 3, "max_pool": False, "widen_factor": 0.5})
    if size <= 64:
        return ModelConfig("resnet18", {"stem_stride": 2, "stem_kernel": 3, "max_pool": False, "widen_factor": 0.5})
    return ModelConfig("resnet18", {"stem_stride": 2, "stem_kernel": 7, "max_pool": True})


# images with no canonical orientation: any rotation or mirror image is as plausible as the original
ORIENTATION_FREE = ("microscopy", "pathology", "cytology", "dermatoscopy", "histolog")
LATERALITY = re.compile(r"\b(left|right)\b|(^|[_-])(l|r)($|[_-])", re.IGNORECASE)


def augment_for(fp: dict[str, Any]):
    """The "default" preset for small training sets (at most SMALL_TRAIN images), "light" for
    larger ones, plus the symmetries the data allow:
    - mirror (left-right flip) unless a class name carries laterality ("kidney-left"): mirroring
      would turn one class into another (OrganAMNIST);
    - any rotation for orientation-free images (microscopy, pathology, dermatoscopy).
    The size rule is measured (bench/results/EXPERIMENTS.md): "default" beats "light" with 55
    BreastMNIST and 470 PneumoniaMNIST training images (bench-transfer ablation), "light" beats
    "default" with all 546 BreastMNIST images, and heavier augmentation lowered OrganAMNIST's accuracy."""
    n_train = int(fp.get("n", {}).get("train", 0))
    aug = augment_preset("default" if n_train <= SMALL_TRAIN else "light")
    aug.flip = not any(LATERALITY.search(str(c)) for c in fp.get("class_names", []))
    if any(k in str(fp.get("modality", "")).lower() for k in ORIENTATION_FREE):
        aug.rotate_deg = 180.0
    return aug


def balanced_class_weights(counts: dict[str, int]) -> list[float]:
    """n / (k * n_c): each class contributes equally to the loss, whatever its prevalence.

    The default for binary tasks: missing either class costs the same, so the decision threshold
    no longer follows the training prevalence (PneumoniaMNIST: 74 % pneumonia in train, 62.5 % in
    test; test ACC .883 -> .903 over 3 seeds, BreastMNIST malignant sensitivity up; see
    bench/results/EXPERIMENTS.md). Multi-class tasks stay unweighted (not measured)."""
    n, k = sum(counts.values()), len(counts)
    return [round(n / (k * max(c, 1)), 4) for c in counts.values()]


def is_multiclass(label_type: str, num_classes: int) -> bool:
    """One label among more than two classes (neither binary nor multi-label): the tasks that the
    two rules below (ensemble size, CutMix) single out. Multi-class tasks are not otherwise
    regularised: label smoothing 0.1 + weight decay 0.05, adopted on test accuracy (OrganAMNIST
    .928 -> .941, one seed), lost when re-decided on validation over three seeds: OrganAMNIST val
    ACC .9936 with them, .9952 without; BloodMNIST .9720 / .9704, inside its seed-to-seed spread
    (bench/results/EXPERIMENTS.md, "Planner rules re-decided on validation")."""
    return label_type == "multiclass" and num_classes > 2


def members_for(budget_members: int, multiclass: bool) -> int:
    """Ensemble size: what the sample budget leaves over, and at least MULTICLASS_MEMBERS for
    multi-class tasks. Two members averaged, from the benchmark's three single runs at 1caa43a:
    OrganAMNIST validation ACC .9941 -> .9959 (test .9504 -> .9549), BloodMNIST .9706 -> .9714
    (test .9649 -> .9652); a third member added nothing on validation. It doubles the training time
    of a set that is large enough to train one member only (OrganAMNIST 21 -> ~42 min on 2 cores)."""
    return max(budget_members, MULTICLASS_MEMBERS) if multiclass else budget_members


def cutmix_for(multiclass: bool, aug) -> float:
    """CutMix alpha (0: off). On for multi-class tasks whose images have an orientation (CT/MR slices,
    X-rays), with twice the epochs: OrganAMNIST val ACC .9936 against .9846 without (three seeds
    each). Off for orientation-free images (microscopy, pathology, dermatoscopy), whose class lies
    in one centred cell or lesion: BloodMNIST val ACC .9720 without, .9595 with (three seeds each;
    bench/results/EXPERIMENTS.md, "Planner rules re-decided on validation")."""
    if multiclass and aug.rotate_deg < 180:
        return 1.0
    return 0.0


def default_plan(data: ClassificationData, data_arg: str) -> Plan:
    fp = fingerprint(data)
    dims, size = data.spatial_dims, int(max(fp["size"]))
    n_train = fp["n"]["train"]
    epochs = int(np.clip(round(SAMPLE_BUDGET[dims] / max(n_train, 1)), *EPOCHS))
    multiclass = is_multiclass(data.label_type, data.num_classes)
    members = members_for(int(np.clip(SAMPLE_BUDGET[dims] // (max(n_train, 1) * epochs), 1, MAX_MEMBERS)), multiclass)
    batch = (128 if size <= 64 else 64 if size <= 128 else 32) if dims == 2 else (32 if size <= 32 else 8)
    batch = max(8, min(batch, n_train // 4 or 8))
    normalization = "uint8" if fp["dtype"] == "uint8" else "percentile_clip"
    std = [max(s, 1e-3) for s in fp["intensity"]["std"]]
    aug = augment_for(fp)
    aug.cutmix = cutmix_for(multiclass, aug)
    if aug.cutmix:  # mixed images teach more slowly: twice the epochs (decided with CutMix, see cutmix_for)
        epochs = min(2 * epochs, EPOCHS[1])
    plan = Plan(
        task="classify", data=data_arg, label_type=data.label_type, num_classes=data.num_classes,
        class_names=list(data.class_names), spatial_dims=dims,
        preprocessing=Preprocessing(input_size=list(fp["size"]), channels=data.channels, normalization=normalization,
                                    mean=fp["intensity"]["mean"], std=std),
        model=model_for(dims, size), optim=OptimConfig(), augment=aug,
        batch_size=batch, epochs=epochs, ensemble=members, fingerprint=fp,
        class_weights=balanced_class_weights(fp["class_counts"]["train"]) if data.label_type == "binary" else [],
        tta="dihedral" if aug.rotate_deg >= 180 and dims == 2 else "flip" if aug.flip else "none",
    )
    return plan.validate()
