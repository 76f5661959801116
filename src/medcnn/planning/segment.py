"""Segmentation fingerprint -> plan: target spacing, patch size, normalisation and U-Net shape.

The rules follow nnU-Net's planner, scaled to a CPU budget:
- target spacing: the median spacing of the training cases (3D); 2D images keep their grid;
- patch: the median case shape at that spacing, rounded up to a multiple of the network's total
  stride and shrunk (largest axis first) until it fits the voxel budget of one batch;
- U-Net stages: halve each axis while it stays >= 8 voxels (at most 5 times), 3x3(x3) kernels, deep
  supervision from the two next-coarser decoder stages (nnU-Net's default);
- validation: 20 % of the non-test cases, at most 20 cases (or 10 %) on large datasets;
- normalisation: CT -> clip to the foreground's 0.5-99.5 % HU, dataset z-score; colour images ->
  per-image per-channel z-score; anything else (MRI, ...) -> per-image z-score;
- mirroring (training augmentation and test-time views, as nnU-Net) along every axis except those
  along which two label classes keep a fixed order (hippocampus: anterior/posterior, measured in
  bench/results/EXPERIMENTS_segment.md);
- test-time mirrored views only while the median case's inference fits the CPU budget
  (``INFER_VOXELS``): a 4288 x 2848 fundus photograph needs 726 windows of 256² per view;
- volumes whose voxel size is unknown (NIfTI files that give no unit and 1 x 1 x 1 voxels, as
  converted slice stacks have): the same U-Net slice by slice (``in_plane``: in-plane kernels and
  strides on one-slice patches, as nnU-Net's 2D configuration), since the distance between slices
  may be several times the pixel size. On LGG (112² slices, 20-88 per patient, 30 CPU minutes) that
  scored a validation Dice of .8191 against the 3D U-Net's .6730 over two folds
  (bench/results/EXPERIMENTS_segment.md, session 50).
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np
from scipy import ndimage

from medcnn.data.segmentation import SegmentationData, read_case
from medcnn.plan import AugmentConfig, ModelConfig, OptimConfig, Plan, Preprocessing, SegmentConfig

# voxels of one training batch (batch x patch) the CPU budget allows, and the batch size range
BATCH_VOXELS = {2: 16 * 128 * 128, 3: 4 * 48 * 64 * 48}
BATCH_RANGE = {2: (4, 32), 3: (2, 12)}
MAX_PATCH_2D = 256
BASE_FILTERS = {2: 16, 3: 16}
MAX_FILTERS = 256
FINGERPRINT_CASES = 64  # cases read for intensity statistics
# training: at most MAX_EPOCHS x patches_per_epoch patches, cut by the trainer to fit MAX_MINUTES of wall
# time on the machine at hand (a GPU gets all epochs; 2 CPU cores get what fits). The budgets are the
# ones medcnn is measured against on a 2-core CPU (issue #4): 20 min for 2D, 30 min for 3D.
MAX_EPOCHS = 50
MAX_MINUTES = {2: 20.0, 3: 30.0}
# AdamW peak rate of the one-cycle schedule. 3D: 1e-2 gave +.002 validation Dice over 3e-3 across the
# five hippocampus cross-validation folds (better on four; EXPERIMENTS_segment.md, session 31); 2D
# (DRIVE) keeps the rate it was measured with.
LR = {2: 3e-3, 3: 1e-2}
DEEP_SUPERVISION = 2  # extra decoder outputs in the loss, as nnU-Net (fewer when the U-Net is shallow)
# mirroring along an axis is left out when, in at least ORDERED of the (>= ORDER_CASES) cases holding both,
# two label classes lie in the same order along it (hippocampus: anterior before posterior): a mirrored
# case would show the classes swapped, which no real case does
ORDERED, ORDER_CASES = 0.9, 5
# voxels the network sees when predicting the median case (windows x window voxels x views) that the
# plan allows itself on 2 CPU cores: about 0.4 us per voxel in bf16 for the default 2D and 3D U-Nets
# (IDRiD 256² windows, LGG 96x96x40 windows), so 1e8 is about 40 s. Beyond it the mirrored views go,
# then the window overlap falls to 0.25.
INFER_VOXELS = 100e6
LOW_OVERLAP = 0.25
# validation cases (checkpoint and post-processing choice): 20 % of the non-test cases, but no more
# than VAL_CASES (or 10 %, if that is more) -- large datasets keep more cases for training
VAL_FRACTION, VAL_CASES = 0.2, 20


def val_fraction_for(n_cases: int) -> float:
    """Share of the non-test cases held out for validation (at least 1 case is kept by the splitter)."""
    if n_cases <= 0:
        return VAL_FRACTION
    n_val = min(VAL_FRACTION * n_cases, max(VAL_CASES, 0.1 * n_cases))
    return round(n_val / n_cases, 4)


def windows(shape: list[int], patch: list[int], overlap: float) -> int:
    """Sliding windows over an image of ``shape`` (MONAI's scan: a stride of patch x (1 - overlap))."""
    n = 1
    for size, p in zip(shape, patch):
        step = max(int(p * (1 - overlap)), 1)
        n *= 1 if size <= p else int(np.ceil((size - p) / step)) + 1
    return n


def inference_for(shape: list[int], patch: list[int], mirror: list[int]) -> tuple[bool, float]:
    """(mirrored test-time views, window overlap) that keep the median case within ``INFER_VOXELS``."""
    cost = lambda views, overlap: windows(shape, patch, overlap) * int(np.prod(patch)) * views  # noqa: E731
    if cost(2 ** len(mirror), 0.5) <= INFER_VOXELS:
        return bool(mirror), 0.5
    return False, 0.5 if cost(1, 0.5) <= INFER_VOXELS else LOW_OVERLAP


def fingerprint(data: SegmentationData, max_cases: int = FINGERPRINT_CASES) -> dict[str, Any]:
    """Spacings and shapes of every case read (up to ``max_cases``, evenly spread), foreground
    intensity percentiles, label frequencies."""
    idx = np.unique(np.linspace(0, len(data.cases) - 1, min(len(data.cases), max_cases)).astype(int))
    spacings, shapes, fg_vals, label_vox, channels, dtypes, centroids = [], [], [], {}, set(), set(), []
    has_fov, spacing_known = False, False
    rng = np.random.default_rng(0)
    for i in idx:
        image, label, fov = read_case(data.cases[i], data.labels)
        spacings.append(image.spacing)
        spacing_known |= not spacing_unknown(image)
        shapes.append(image.spatial_shape)
        channels.add(image.channels)
        dtypes.add(str(image.array.dtype))
        has_fov |= fov is not None
        fg = label.array[0] > 0
        for v, n in zip(*np.unique(label.array, return_counts=True)):
            label_vox[int(v)] = label_vox.get(int(v), 0) + int(n)
        classes = [int(k) for k in np.unique(label.array[0]) if k > 0]
        if len(classes) > 1:
            centres = ndimage.center_of_mass(fg, label.array[0], classes)  # fg is 1 on every labelled voxel
            centroids.append(dict(zip(classes, map(np.asarray, centres))))
        vals = image.array[0][fg]
        if vals.size:
            fg_vals.append(rng.choice(vals, size=min(vals.size, 10_000), replace=False))
    fg = np.concatenate(fg_vals) if fg_vals else np.zeros(1, np.float32)
    total = sum(label_vox.values()) or 1
    return {
        "name": data.name, "source": data.source, "modality": data.modality, "channel_names": list(data.channel_names),
        "n_cases": len(data.cases), "n_test_cases": len(data.test_cases), "n_read": int(len(idx)),
        "labels": {str(k): v for k, v in data.labels.items()},
        "spatial_dims": len(shapes[0]), "channels": max(channels), "dtypes": sorted(dtypes),
        "spacing_median": [round(float(v), 4) for v in np.median(spacings, 0)],
        "spacing_min": [round(float(v), 4) for v in np.min(spacings, 0)],
        "spacing_max": [round(float(v), 4) for v in np.max(spacings, 0)],
        "shape_median": [int(v) for v in np.median(shapes, 0)],
        "shape_min": [int(v) for v in np.min(shapes, 0)], "shape_max": [int(v) for v in np.max(shapes, 0)],
        "foreground_intensity": {k: round(float(f(fg)), 4) for k, f in (
            ("mean", np.mean), ("std", np.std), ("p0.5", lambda a: np.percentile(a, 0.5)),
            ("p99.5", lambda a: np.percentile(a, 99.5)))},
        "label_fraction": {str(k): round(v / total, 5) for k, v in sorted(label_vox.items())},
        "has_fov": has_fov, "spacing_known": spacing_known,
        "label_order": label_order(centroids, len(shapes[0])),
    }


def spacing_unknown(image) -> bool:
    """A volume whose file gives no unit and voxels of exactly 1 x 1 x 1: the size was never recorded."""
    return len(image.spatial_shape) == 3 and image.length_unit is None


def in_plane(plan_patch: list[int], stages: int) -> list[str]:
    """Plan overrides that make a 3D U-Net plan slice-wise: one-slice patches of the same in-plane size,
    3 x 3 x 1 kernels, in-plane strides, the 2D batch's upper bound (so LGG's slices variant was trained:
    bench/applications.py)."""
    h, w = plan_patch[:2]
    return [f"segment.patch_size=[{h},{w},1]", f"preprocessing.input_size=[{h},{w},1]",
            f"batch_size={BATCH_RANGE[2][1]}", "model.kwargs.kernel_size=[3,3,1]",
            "model.kwargs.strides=" + json.dumps([[1, 1, 1]] + [[2, 2, 1]] * (stages - 1))]


def label_order(centroids: list[dict[int, np.ndarray]], dims: int) -> dict[str, Any]:
    """Per spatial axis, how consistently two label classes keep one order along it: the largest
    share, over class pairs, of the cases (holding both) in which the first class's centroid lies
    before the second's, or after it, whichever is more common; with the number of those cases."""
    share, cases = [0.0] * dims, [0] * dims
    classes = sorted({k for c in centroids for k in c})
    for i, a in enumerate(classes):
        for b in classes[i + 1:]:
            d = np.array([c[b] - c[a] for c in centroids if a in c and b in c])
            if len(d) == 0:
                continue
            for ax in range(dims):
                s = max(float(np.mean(d[:, ax] > 0)), float(np.mean(d[:, ax] < 0)))
                if s > share[ax]:
                    share[ax], cases[ax] = round(s, 3), len(d)
    return {"share": share, "cases": cases}


def mirror_axes_for(fp: dict[str, Any]) -> list[int]:
    """Spatial axes along which mirroring keeps the labels right (every axis, unless the fingerprint
    shows label classes in a fixed order along it)."""
    order = fp.get("label_order") or {}
    share, cases = order.get("share", []), order.get("cases", [])
    return [ax for ax in range(fp["spatial_dims"])
            if not (ax < len(share) and share[ax] >= ORDERED and cases[ax] >= ORDER_CASES)]


def _stages(patch: list[int]) -> int:
    n = 0
    while n < 5 and all(p // 2 ** (n + 1) >= 4 for p in patch) and min(p // 2 ** n for p in patch) >= 8:
        n += 1
    return n


def choose_patch(shape: list[int], dims: int) -> tuple[list[int], int]:
    """Patch (multiple of the total stride) and batch size within the batch voxel budget."""
    patch = [min(int(s), MAX_PATCH_2D) for s in shape] if dims == 2 else [int(s) for s in shape]
    lo, hi = BATCH_RANGE[dims]
    while np.prod(patch) * lo > BATCH_VOXELS[dims]:
        i = int(np.argmax(patch))
        patch[i] = max(8, int(patch[i] * 0.9))
    k = _stages(patch)
    mult = 2 ** max(k, 1)
    patch = [int(np.ceil(p / mult) * mult) for p in patch]
    batch = int(np.clip(BATCH_VOXELS[dims] // int(np.prod(patch)), lo, hi))
    return patch, batch


def unet_for(patch: list[int], dims: int) -> ModelConfig:
    k = _stages(patch)
    filters = [min(BASE_FILTERS[dims] * 2 ** i, MAX_FILTERS) for i in range(k + 1)]
    return ModelConfig("unet", {"filters": filters, "strides": [1] + [2] * k,
                                "deep_supervision": max(0, min(DEEP_SUPERVISION, k - 1))})


COLOUR_WORDS = ("photo", "fundus", "dermoscop", "dermatoscop", "colour", "color", "rgb", "microscop", "histolog")
COLOUR_CHANNELS = {"r", "g", "b", "red", "green", "blue"}


def normalization_for(fp: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(normaliser, its arguments), from what the channels are (nnU-Net decides the same way from
    dataset.json's ``channel_names``): CT: clip to the foreground's 0.5-99.5 % HU, then the
    foreground's mean/std; colour photographs (three channels named R/G/B, or a photograph / fundus /
    dermoscopy / microscopy modality, or three unnamed channels): rgb; anything else, e.g. MR
    sequences (T1, FLAIR, post-contrast...): zscore per channel over the nonzero voxels."""
    modality = str(fp.get("modality", "")).lower()
    names = [str(n).strip().lower() for n in fp.get("channel_names", [])]
    fgi = fp["foreground_intensity"]
    if "ct" in modality.replace(",", " ").split():
        return "ct", {"clip": [fgi["p0.5"], fgi["p99.5"]], "mean": fgi["mean"], "std": max(fgi["std"], 1e-3)}
    colour = (names and set(names) <= COLOUR_CHANNELS) or any(w in modality for w in COLOUR_WORDS)
    if fp["channels"] == 3 and (colour or not names):
        return "rgb", {}
    return "zscore", {}


def default_plan(data: SegmentationData, data_arg: str, slice_wise: bool | None = None) -> Plan:
    """The plan of a segmentation dataset. ``slice_wise``: a 3D dataset's U-Net slice by slice (True) or
    in 3D (False); None: slice by slice where the voxel size is unknown (``spacing_unknown``)."""
    fp = fingerprint(data)
    dims = fp["spatial_dims"]
    target = fp["spacing_median"] if dims == 3 else []
    shape = fp["shape_median"]
    if target:
        shape = [int(round(n * s / t)) for n, s, t in zip(shape, fp["spacing_median"], target)]
    patch, batch = choose_patch(shape, dims)
    norm, norm_args = normalization_for(fp)
    test_fraction = 0.0 if data.test_cases else 0.2
    n_trainval = len(data.cases) - int(round(len(data.cases) * test_fraction))
    labels = {int(k): v for k, v in fp["labels"].items()}
    names = [labels[k] for k in sorted(labels)]
    mirror = mirror_axes_for(fp)
    tta, overlap = inference_for(shape, patch, mirror)
    seg = SegmentConfig(patch_size=patch, target_spacing=target, use_fov=fp["has_fov"], tta_flips=tta,
                        sw_overlap=overlap, mirror_axes=mirror,
                        split={"test_fraction": test_fraction, "val_fraction": val_fraction_for(n_trainval), "fold": None})
    aug = AugmentConfig(preset="custom", p=0.3, flip=bool(mirror), rotate_deg=15.0, translate=0.0, scale=[0.85, 1.25],
                        brightness=0.15, contrast=0.15, gamma=0.3, noise=0.1)
    plan = Plan(task="segment", data=data_arg, label_type="multiclass", num_classes=len(names), class_names=names,
                spatial_dims=dims,
                preprocessing=Preprocessing(input_size=list(patch), channels=fp["channels"], normalization=norm,
                                            normalization_args=norm_args,
                                            mean=[0.0] * fp["channels"], std=[1.0] * fp["channels"]),
                model=unet_for(patch, dims), optim=OptimConfig(name="adamw", lr=LR[dims], weight_decay=3e-5),
                augment=aug, batch_size=batch, epochs=MAX_EPOCHS, max_minutes=MAX_MINUTES[dims], segment=seg,
                val_metric="dice", fingerprint=fp)
    if dims == 3 and (not fp["spacing_known"] if slice_wise is None else slice_wise):
        plan = plan.override(in_plane(patch, len(plan.model.kwargs["filters"])))
        tta, overlap = inference_for(shape, plan.segment.patch_size, mirror)
        plan = plan.override([f"segment.tta_flips={str(tta).lower()}", f"segment.sw_overlap={overlap}"])
    return plan.validate()
