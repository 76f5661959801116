"""Enhancement fingerprint -> plan: intensity window, patch, network, degradation defaults.

- normalisation (affine, nothing clipped, undone after restoration, so images come back in their
  units): CT (DICOM modality, or HU-like values: air at -1000) -> one HU window for all scans, the 0.5-99.5 percentiles of the training images' HU;
  anything else (MRI has arbitrary units per scan) -> each image's own 0.5-99.5 percentiles.
  Noise levels (sigma) are stated in these normalised units (25/255 = 0.098 of the range);
- network: a residual U-Net (MONAI DynUNet, 32-64-128-256 channels, no normalisation layers, as
  DRUNet; the image is restored as input + predicted correction): multi-scale, so it is fast per
  pixel on a CPU. Batch norm's running statistics of training patches did not fit whole slices of
  another scan (TCIA MR: 14.3 dB, below the noisy input; without norm 27.8 dB; EXPERIMENTS_enhance.md);
- patch: 64 x 64 (or the median slice if smaller), batch 16; whole slices at validation and predict;
- the gradients' global norm clipped at 0.5: without normalisation layers, AdamW at 1e-3 now and then
  takes a step that wrecks the network (loss 0.019 -> 0.11, validation -10 dB, never recovered), while
  ordinary steps stay under 0.5 (EXPERIMENTS_enhance.md, sessions 54-55);
- ``degradation: none`` (the images are the noisy scans): Noise2Void blind-spot training.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from medcnn.data.enhance import EnhanceData
from medcnn.errors import InputError
from medcnn.plan import AugmentConfig, EnhanceConfig, ModelConfig, OptimConfig, Plan, Preprocessing

FINGERPRINT_SOURCES = 32
PATCH, BATCH = 64, 16
GRAD_CLIP = 0.5
MAX_EPOCHS = 60
MAX_MINUTES = 20.0
DEFAULT_LEVEL = {"none": [1.0], "gaussian": [25 / 255], "rician": [0.05], "speckle": [0.2], "downsample": [2],
                 "lowdose-ct": [1e4], "sparse-view-ct": [90]}


def fingerprint(data: EnhanceData, max_sources: int = FINGERPRINT_SOURCES) -> dict[str, Any]:
    """Modality, channels, slice shapes and intensity percentiles of up to ``max_sources`` sources."""
    idx = np.unique(np.linspace(0, len(data.sources) - 1, min(len(data.sources), max_sources)).astype(int))
    values, shapes, channels, modalities = [], [], set(), set()
    rng = np.random.default_rng(0)
    for i in idx:
        sid = data.sources[i].id
        img = data.image(sid)
        channels.add(img.channels)
        modalities.add(str(img.meta.get("modality", "")).upper())
        a = np.asarray(img.array, np.float32)
        shapes.append(a.shape[1:3])
        flat = a.reshape(-1)
        values.append(flat[rng.integers(0, flat.size, min(flat.size, 200_000))])
    v = np.concatenate(values)
    lo, hi = (float(x) for x in np.percentile(v, [0.5, 99.5]))
    if hi <= lo:
        hi = lo + 1.0
    mods = sorted(m for m in modalities if m)
    # NIfTI carries no modality: CT is recognised by its HU scale (air near -1000 present, nothing below -3100)
    hu_like = bool(v.min() >= -3100 and lo <= -500)
    return {"name": data.name, "source": data.source, "n_sources": len(data.sources),
            "channels": sorted(channels), "modality": ",".join(mods), "hu_like": hu_like,
            "slice_shape_median": [int(np.median([s[k] for s in shapes])) for k in (0, 1)],
            "intensity": {"p0.5": lo, "p99.5": hi, "min": float(v.min()), "max": float(v.max())}}


def default_plan(data: EnhanceData, data_arg: str, degradation: str = "gaussian",
                 level: list[float] | None = None) -> Plan:
    fp = fingerprint(data)
    if len(fp["channels"]) != 1:
        raise InputError(f"images with different channel counts {fp['channels']}; enhance one kind at a time", data.root)
    c = fp["channels"][0]
    patch = [min(PATCH, max(16, (n // 16) * 16)) for n in fp["slice_shape_median"]]
    ct = "CT" in fp["modality"].split(",") or fp["hu_like"] or degradation in ("lowdose-ct", "sparse-view-ct")
    window = [round(fp["intensity"]["p0.5"], 4), round(fp["intensity"]["p99.5"], 4)]
    norm, norm_args = ("window", {"window": window}) if ct else ("percentile_affine", {})
    en = EnhanceConfig(degradation=degradation, level=list(level or DEFAULT_LEVEL[degradation]),
                       mode="noise2void" if degradation == "none" else "supervised",
                       modality=fp["modality"], patch_size=patch, patches_per_epoch=BATCH * 256)
    plan = Plan(task="enhance", data=data_arg, label_type="multiclass", num_classes=c, class_names=[],
                spatial_dims=2,
                preprocessing=Preprocessing(input_size=patch, channels=c, normalization=norm, normalization_args=norm_args,
                                            mean=[0.0] * c, std=[1.0] * c),
                model=ModelConfig("unet", {"filters": [32, 64, 128, 256], "strides": [1, 2, 2, 2], "norm": ""}),
                optim=OptimConfig(name="adamw", lr=1e-3, weight_decay=1e-4, scheduler="cosine", grad_clip=GRAD_CLIP),
                augment=AugmentConfig(preset="none", p=0.0), batch_size=BATCH, epochs=MAX_EPOCHS,
                max_minutes=MAX_MINUTES, val_metric="psnr", enhance=en, fingerprint=fp)
    return plan.validate()
