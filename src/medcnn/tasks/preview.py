"""``medcnn augment DATA --preview FILE.png``: what the plan's augmentation does to real training images.

One row per sample: the image as the network would see it without augmentation, then ``views``
independently augmented copies (segmentation: the label map's outline drawn on each, so a mask
that does not follow its image shows at once; 3D: the middle slice of the last axis). Each task
says what its rows are (``Task.preview``): enhancement shows the degradation the model learns to undo.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from medcnn.errors import MedcnnError
from medcnn.plan import Plan
from medcnn.utils.files import atomic_savefig


def picture(t: torch.Tensor) -> np.ndarray:
    """(C, *spatial) -> a 2D picture: first channel (or RGB), 3D -> middle of the last axis."""
    a = t.float().numpy()
    if a.ndim == 4:
        a = a[..., a.shape[-1] // 2]
    return np.moveaxis(a, 0, -1) if a.shape[0] == 3 else a[0]


def augment_caption(plan: Plan) -> str:
    """The augmentation settings in effect, for the picture's title."""
    a = plan.augment
    on = {k: getattr(a, k) for k in ("rotate_deg", "scale", "elastic", "blur", "noise", "gamma", "bias_field",
                                     "ghosting", "motion", "window_jitter") if getattr(a, k) not in (0, 0.0, [1.0, 1.0])}
    return f"augment preset {a.preset}, p={a.p}, " + ", ".join(f"{k}={v}" for k, v in on.items())


def augmented_rows(plan: Plan, x: torch.Tensor, views: list[tuple[torch.Tensor, torch.Tensor | None]],
                   y: torch.Tensor | None = None) -> dict:
    """The preview of originals ``x`` (labels ``y``) and their augmented ``views``."""
    n = len(views)
    rows = [[picture(x[i])] + [picture(v[0][i]) for v in views] for i in range(len(x))]
    masks = [[picture(y[i]) if y is not None else None] + [picture(v[1][i]) if y is not None else None for v in views]
             for i in range(len(x))]
    return {"rows": rows, "masks": masks, "titles": ["original"] + [f"augmented {i + 1}" for i in range(n)],
            "what": augment_caption(plan)}


def write_preview(task, plan: Plan, dataset, path: Path, *, samples: int = 4, views: int = 5, seed: int = 0) -> Path:
    """Write the preview grid PNG of ``task`` (atomically) and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    p = task.preview(plan, dataset, samples, views, rng)
    rows, masks = p["rows"], p["masks"]
    if not rows:
        raise MedcnnError("no images to preview", dataset.source if hasattr(dataset, "source") else None)
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
                ax.set_title(p["titles"][j], fontsize=8)
    fig.suptitle(p["what"], fontsize=8)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=100)
    plt.close(fig)
    return path
