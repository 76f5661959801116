"""``medcnn predict`` for an enhancement run: restore files (DICOM series -> derived DICOM series,
NIfTI -> NIfTI, PNG -> PNG) with a before / after / difference picture, and say how much was changed."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from medcnn import __version__
from medcnn.infer.enhancer import Enhancer
from medcnn.io import read_image
from medcnn.io.dicom_derived import write_derived_series
from medcnn.io.nifti import write_nifti
from medcnn.runs import RunFolder
from medcnn.tasks.base import OutputJob, Table
from medcnn.transforms.normalize import get_normalizer
from medcnn.utils.files import atomic_path, atomic_savefig

WHAT = {"gaussian": "denoised", "rician": "denoised", "speckle": "despeckled", "downsample": "super-resolved",
        "lowdose-ct": "low-dose CT denoised", "sparse-view-ct": "streaks reduced"}


def write_png_like(values: np.ndarray, dtype: np.dtype, path: Path) -> Path:
    """(C, H, W) restored values -> PNG of the input's bit depth (values clipped to its range)."""
    from PIL import Image as PILImage

    dtype = np.dtype(dtype) if np.dtype(dtype).kind in "ui" else np.dtype(np.uint8)
    info = np.iinfo(dtype)
    a = np.clip(np.rint(values), max(info.min, 0), min(info.max, 65535)).astype(np.uint16 if info.max > 255 else np.uint8)
    img = a[0] if a.shape[0] == 1 else np.moveaxis(a, 0, -1)
    with atomic_path(path) as tmp:
        PILImage.fromarray(img).save(tmp, format="PNG")
    return path


def save_comparison(before: np.ndarray, after: np.ndarray, path: Path, window: tuple[float, float]) -> Path:
    """Before | after | difference of one slice (the middle one of a volume), same grey window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def mid(a):
        a = a[0]
        return a[..., a.shape[-1] // 2].T if a.ndim == 3 else a

    b, a = mid(before), mid(after)
    d = a - b
    lim = float(np.percentile(np.abs(d), 99.5)) or 1.0
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.2))
    for ax, img, title, kw in ((axes[0], b, "input", dict(cmap="gray", vmin=window[0], vmax=window[1])),
                               (axes[1], a, "restored", dict(cmap="gray", vmin=window[0], vmax=window[1])),
                               (axes[2], d, f"restored - input (±{lim:.3g})", dict(cmap="coolwarm", vmin=-lim, vmax=lim))):
        ax.imshow(img, **kw)
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=100)
    plt.close(fig)
    return path


class EnhanceJob(OutputJob):
    """``medcnn predict`` for an enhancement run: each input restored into its own folder (a derived
    DICOM series for a DICOM series, NIfTI for NIfTI and volumes, PNG for PNG) with a before / after /
    difference picture; inputs are only read."""

    fields = ["mean_abs_change", "p99_abs_change", "outputs", "warning"]

    def __init__(self, enh: Enhancer, run: Path, out_dir: Path | None, checkpoint: str = "best"):
        self.enh, self.run, self.checkpoint = enh, run, checkpoint
        self.out_dir = out_dir or RunFolder(run).predictions_dir
        self.what = WHAT.get(self.enh.plan.enhance.degradation, "enhanced")

    def one(self, path: Path, dest: Path) -> dict:
        image = read_image(path)
        return self.save(path, image, self.enh.restore(image), dest)

    def save(self, path: Path, image, restored, dest: Path) -> dict:
        """Write one input's restored image and comparison into ``dest``; the result row."""
        en = self.enh.plan.enhance
        dtype = image.array.dtype
        dest.mkdir(parents=True, exist_ok=True)
        files = {}
        fmt = image.meta.get("format")
        if fmt == "dicom" and image.meta.get("sop_instance_uids"):
            level = ",".join(f"{v:g}" for v in en.level)
            files["dicom"] = dest / "dicom"
            write_derived_series(path, restored, dest / "dicom", description=f"medcnn {self.what}",
                                 derivation=f"medcnn {__version__}: {self.what} by a U-Net trained to undo "
                                            f"{en.degradation} (level {level}); run {Path(self.run).name}",
                                 keep_phi=self.keep_phi)
        elif fmt == "nifti" or image.spatial_dims == 3:
            files["nifti"] = write_nifti(restored, dest / "restored.nii.gz")
        else:
            files["png"] = write_png_like(restored.array, dtype, dest / "restored.png")
        lo, hi = get_normalizer(self.enh.plan).fit(image.array).window
        files["comparison"] = save_comparison(image.array, restored.array, dest / "comparison.png", (lo, hi))
        change = np.abs(restored.array.astype(np.float64) - image.array.astype(np.float64))
        row = {"file": str(path), "outputs": {k: str(v) for k, v in files.items()},
               "mean_abs_change": round(float(change.mean()), 4),
               "p99_abs_change": round(float(np.percentile(change, 99)), 4)}
        if restored.meta.get("range_warning"):  # Enhancer.restore has logged it
            row["warning"] = restored.meta["range_warning"]
        return row

    def row(self, r: dict) -> dict:
        return {k: r.get(k) for k in ("file", *self.fields, "error")}

    def table(self, results: list[dict]) -> Table:
        t = Table(f"{self.run} ({self.checkpoint}): {self.what}", ["file", "mean |change|", "99th pct |change|"],
                  notes=[f"outputs in {self.out_dir} (intensities in the input's units)"])
        for r in results:
            if "error" not in r:
                t.rows.append([Path(r["file"]).name, f"{r['mean_abs_change']:.4g}", f"{r['p99_abs_change']:.4g}"])
        return t
