"""Files a segmentation is written to: NIfTI mask, PNG overlay, measurements as JSON and CSV."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from medcnn.io.image import Image
from medcnn.measure.components import CSV_FIELDS, measure, to_dict, to_rows
from medcnn.utils.files import atomic_path, atomic_savefig, atomic_write_json

COLOURS = np.array([[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                    [145, 30, 180], [70, 240, 240], [240, 50, 230]], dtype=np.float32) / 255


def _display(image: Image, index) -> np.ndarray:
    """A 2D slice as RGB in [0, 1], robustly windowed (1-99 percentiles)."""
    a = image.array[(slice(None),) + index].astype(np.float32)
    a = np.moveaxis(a, 0, -1)
    if a.shape[-1] != 3:
        a = np.repeat(a[..., :1], 3, axis=-1)
    lo, hi = np.percentile(a, 1), np.percentile(a, 99)
    return np.clip((a - lo) / max(hi - lo, 1e-6), 0, 1)


def overlay_slice(label: Image) -> tuple:
    """Index of the 2D view: the whole image in 2D; in 3D the slice (last axis) with the most foreground
    (pass the reference when there is one, so the view shows the structure, not the errors)."""
    if label.spatial_dims == 2:
        return (slice(None), slice(None))
    counts = (label.array[0] > 0).sum(axis=(0, 1))
    k = int(np.argmax(counts)) if counts.any() else label.spatial_shape[2] // 2
    return (slice(None), slice(None), k)


OVERLAY_SIDE = 1024  # longest side drawn: the figure is 400 px a panel, a fundus photograph 4288


def _shrunk(a: np.ndarray, f: int, how: str) -> np.ndarray:
    """Blocks of f x f pixels of a 2D(+channels) array as one: their mean (image) or max (label, so
    a lesion smaller than a block still shows)."""
    if f == 1:
        return a
    h, w = a.shape[0] // f * f, a.shape[1] // f * f
    blocks = a[:h, :w].reshape(h // f, f, w // f, f, *a.shape[2:])
    return blocks.max(axis=(1, 3)) if how == "max" else blocks.mean(axis=(1, 3))


def save_overlay(image: Image, label: Image, path: str | Path, reference: Image | None = None, alpha: float = 0.45) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = overlay_slice(label if reference is None else reference)
    f = max(1, -(-max(label.spatial_shape[:2]) // OVERLAY_SIDE))
    base = _shrunk(_display(image, idx), f, "mean")
    lab = _shrunk(label.array[0][idx], f, "max").astype(int)
    col = COLOURS[np.clip(lab, 0, len(COLOURS) - 1)]
    rgb = np.where(lab[..., None] > 0, (1 - alpha) * base + alpha * col, base)
    panels = [("prediction", rgb)]
    if reference is not None:
        ref = _shrunk(reference.array[0][idx], f, "max").astype(int)
        rcol = COLOURS[np.clip(ref, 0, len(COLOURS) - 1)]
        panels.insert(0, ("reference", np.where(ref[..., None] > 0, (1 - alpha) * base + alpha * rcol, base)))
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4))
    for ax, (title, im) in zip(np.atleast_1d(axes), panels):
        ax.imshow(np.swapaxes(im, 0, 1) if image.spatial_dims == 3 else im, origin="lower" if image.spatial_dims == 3 else "upper")
        ax.set_title(title + ("" if image.spatial_dims == 2 else f" (slice {idx[2]})"))
        ax.axis("off")
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=100)
    plt.close(fig)
    return Path(path)


COMPACT_AFTER = 1000  # components listed in measurements.json beyond which it is written without indentation


def save_measurements(label: Image, names: dict[int, str], json_path: Path, csv_path: Path, labels: list[int]) -> dict:
    m = measure(label, label_names=names, labels=labels)
    report = to_dict(m, label)
    # indented for reading when short; compact when a label breaks into many components (scattered lesions)
    atomic_write_json(json_path, report, indent=2 if sum(len(x.components) for x in m) <= COMPACT_AFTER else None)
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(CSV_FIELDS))
        w.writeheader()
        w.writerows(to_rows(m, label))
    return report
