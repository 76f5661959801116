"""`medcnn augment DATA --preview FILE.png`: what the plan's augmentation does to real training images.

One row per sample: the image as the network would see it without augmentation, then ``views``
independently augmented copies (segmentation: the label map's outline drawn on each, so a mask
that does not follow its image shows at once; 3D: the middle slice of the last axis). Enhancement
plans show the degradation the model learns to undo instead.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from medcnn.errors import MedcnnError


def _classify_batch(plan, ds, n: int, rng: np.random.Generator) -> tuple[torch.Tensor, None]:
    x, _ = ds.split("train")
    idx = np.sort(rng.choice(len(x), size=min(n, len(x)), replace=False))
    return torch.as_tensor(x[idx]).float() / 255.0, None


def _segment_batch(plan, ds, n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    from medcnn.data.seg_prepare import prepare_case
    from medcnn.data.segmentation import read_case
    from medcnn.train.patches import PatchBatches

    cases = [ds.cases[i] for i in np.sort(rng.choice(len(ds.cases), size=min(n, len(ds.cases)), replace=False))]
    prepared = [prepare_case(c.id, *read_case(c, ds.labels), plan) for c in cases]
    patches = PatchBatches(prepared, plan.segment.patch_size, batch_size=len(prepared), n_batches=1,
                           fg_oversample=1.0, seed=int(rng.integers(1 << 30)))
    x, y, _ = next(iter(patches))
    return x, y


def _augment(plan, x: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    if plan.task == "segment":
        from medcnn.transforms.seg_augment import SegAugment

        xa, ya, _ = SegAugment(plan.augment, plan.spatial_dims, plan.mirror_axes)(x.clone(), y.clone())
        return xa, ya
    from medcnn.transforms.augment import BatchAugment

    return BatchAugment(plan.augment, plan.spatial_dims)(x.clone()), None


def _degrade(plan, ds, n: int, rng: np.random.Generator, views: int) -> list[list[np.ndarray]]:
    from medcnn.train.enhance_data import degradation_for, load_slices, pixel_mm

    ids = [s.id for s in ds.sources]
    picks = rng.choice(ids, size=n, replace=len(ids) < n)  # a single series gives several of its slices
    pairs = sorted({(str(sid), int(rng.integers(ds.n_slices(sid)))) for sid in picks})
    slices = load_slices(plan, ds, pairs)
    deg = degradation_for(plan, pixel_mm(ds, ids))
    gen = torch.Generator().manual_seed(int(rng.integers(1 << 30)))
    rows = []
    for s in slices:
        ys = [deg(s[None], gen)[0][0] for _ in range(views)]
        rows.append([s[0].numpy()] + [y[0].numpy() for y in ys])
    return rows


def _mid(t: torch.Tensor) -> np.ndarray:
    """(C, *spatial) -> a 2D picture: first channel (or RGB), 3D -> middle of the last axis."""
    a = t.float().numpy()
    if a.ndim == 4:
        a = a[..., a.shape[-1] // 2]
    return np.moveaxis(a, 0, -1) if a.shape[0] == 3 else a[0]


def preview(plan, ds, path: Path, *, samples: int = 4, views: int = 5, seed: int = 0) -> Path:
    """Write the preview grid PNG (atomically) and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medcnn.utils.files import atomic_savefig

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    masks: list[list[np.ndarray | None]]
    if plan.task == "enhance":
        rows = _degrade(plan, ds, samples, rng, views)
        masks = [[None] * len(r) for r in rows]
        titles = ["clean"] + [f"{plan.enhance.degradation} {i + 1}" for i in range(views)]
    else:
        x, y = (_segment_batch if plan.task == "segment" else _classify_batch)(plan, ds, samples, rng)
        aug = [_augment(plan, x, y) for _ in range(views)]
        rows = [[_mid(x[i])] + [_mid(a[0][i]) for a in aug] for i in range(len(x))]
        masks = [[_mid(y[i]) if y is not None else None] + [_mid(a[1][i]) if y is not None else None for a in aug]
                 for i in range(len(x))]
        titles = ["original"] + [f"augmented {i + 1}" for i in range(views)]
    if not rows:
        raise MedcnnError("no images to preview", ds.source if hasattr(ds, "source") else None)
    lo = min(float(np.percentile(r[0], 0.5)) for r in rows)
    hi = max(float(np.percentile(r[0], 99.5)) for r in rows)
    fig, axes = plt.subplots(len(rows), views + 1, figsize=(2.0 * (views + 1), 2.0 * len(rows)), squeeze=False)
    for i, (row, mrow) in enumerate(zip(rows, masks)):
        for j, (img, m) in enumerate(zip(row, mrow)):
            ax = axes[i][j]
            ax.imshow(np.clip(img, 0, 1) if img.ndim == 3 else img, cmap=None if img.ndim == 3 else "gray", vmin=lo, vmax=hi)
            if m is not None and np.any(m > 0):
                ax.contour(m, levels=np.arange(0.5, float(m.max()) + 0.5), linewidths=0.7, cmap="autumn")
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(titles[j], fontsize=8)
    a = plan.augment
    on = {k: getattr(a, k) for k in ("rotate_deg", "scale", "elastic", "blur", "noise", "gamma", "bias_field",
                                     "ghosting", "motion", "window_jitter") if getattr(a, k) not in (0, 0.0, [1.0, 1.0])}
    what = (f"{plan.enhance.degradation} {plan.enhance.level}" if plan.task == "enhance"
            else f"augment preset {a.preset}, p={a.p}, " + ", ".join(f"{k}={v}" for k, v in on.items()))
    fig.suptitle(what, fontsize=8)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=100)
    plt.close(fig)
    return path
