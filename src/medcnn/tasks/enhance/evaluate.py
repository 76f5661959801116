"""``medcnn evaluate`` for enhancement runs: PSNR and SSIM on held-out slices, per degradation
level, beside the classical baselines on the same slices and the same noise realisations.

Methods: ``medcnn`` (the run's model), the degraded input itself (named ``noisy``, ``bicubic`` for
super-resolution, ``fbp`` for CT), and for the noise and low-dose CT models the classical baselines
given every advantage: ``bm3d`` and ``nlm`` (scikit-image's non-local means) with the true noise
level (an oracle: the Gaussian sigma for Gaussian and Rician noise, the standard deviation of the
noise the dose put into each CT image), and for Rician noise ``bm3d-rician``: BM3D with the oracle
sigma, its output mapped back through the Rician mean (the bias a magnitude image carries: an
amplitude A under noise sigma has mean sigma sqrt(pi/2) L_1/2(-A^2 / 2 sigma^2)). ``bm3d-estimated``
(BM3D with scikit-image's wavelet estimate of sigma, what a user without the truth gets) is an extra,
labelled row. The paired difference is taken against the best oracle baseline. Metrics are computed
in the plan's normalised units (``data_range`` = 1 = the intensity range the plan maps to [0, 1])
with scikit-image.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medcnn.data.enhance import load_enhance
from medcnn.errors import RunFolderError
from medcnn.infer.enhancer import Enhancer
from medcnn.metrics.intervals import mean_ci, paired_difference_ci
from medcnn.runs import RunFolder
from medcnn.train.enhance_data import degradation_for, load_slices, part_pairs, pixel_mm
from medcnn.utils.files import atomic_write_json, atomic_write_text

MAX_SLICES = 64


def baseline_name(kind: str) -> str:
    return {"downsample": "bicubic", "lowdose-ct": "fbp", "sparse-view-ct": "fbp"}.get(kind, "noisy")


def classical_methods(kind: str) -> list[str]:
    if kind in ("downsample", "sparse-view-ct"):
        return []
    return ["bm3d", "nlm", *(["bm3d-rician"] if kind == "rician" else []), "bm3d-estimated"]


ORACLE = ("bm3d", "nlm", "bm3d-rician")  # the baselines given the true noise level


def oracle_sigma(kind: str, level: float, noisy: np.ndarray, clean: np.ndarray) -> float:
    """The true noise level of one degraded image: the Gaussian sigma of Gaussian and Rician noise,
    else (low-dose CT) the standard deviation of the noise the degradation added to this image."""
    return float(level) if kind in ("gaussian", "rician") else float(np.std(noisy - clean))


def rician_mean(amplitude: np.ndarray, sigma: float) -> np.ndarray:
    """E[magnitude] of a Rician variable: sigma sqrt(pi/2) L_1/2(-A^2 / 2 sigma^2) (scaled Bessel
    functions keep it finite for large A / sigma)."""
    from scipy.special import i0e, i1e

    q = (np.asarray(amplitude, dtype=np.float64) / sigma) ** 2 / 4
    return sigma * np.sqrt(np.pi / 2) * ((1 + 2 * q) * i0e(q) + 2 * q * i1e(q))


def rician_unbias(denoised: np.ndarray, sigma: float) -> np.ndarray:
    """The amplitude whose Rician mean is ``denoised`` (0 below the noise floor sigma sqrt(pi/2))."""
    grid = np.linspace(0.0, 1.5 + 40 * sigma, 4001)
    return np.interp(denoised, rician_mean(grid, sigma), grid).astype(np.float32)


def eval_levels(level: list[float], kind: str) -> list[float]:
    """The plan's level, or for a range its ends and middle (integers for factors and view counts)."""
    if len(level) == 1:
        return [float(level[0])]
    lo, hi = float(min(level)), float(max(level))
    mid = float(np.sqrt(lo * hi)) if kind == "lowdose-ct" else (lo + hi) / 2
    vals = [lo, mid, hi]
    if kind in ("downsample", "sparse-view-ct"):
        vals = [float(round(v)) for v in vals]
    return sorted(set(vals))


def run_classical(method: str, noisy: np.ndarray, sigma: float | None) -> np.ndarray:
    """One (H, W) slice in normalised units through BM3D or NLM (``sigma``: the oracle noise level;
    ``bm3d-estimated`` ignores it and estimates its own)."""
    from skimage.restoration import denoise_nl_means, estimate_sigma

    s = float(sigma) if sigma is not None and method != "bm3d-estimated" else float(estimate_sigma(noisy))
    s = max(s, 1e-4)
    if method in ("bm3d", "bm3d-estimated", "bm3d-rician"):
        import bm3d

        out = np.asarray(bm3d.bm3d(noisy, sigma_psd=s), dtype=np.float32)
        return rician_unbias(out, s) if method == "bm3d-rician" else out
    if method == "nlm":
        return np.asarray(denoise_nl_means(noisy, h=0.8 * s, sigma=s, patch_size=5, patch_distance=6,
                                           fast_mode=True), dtype=np.float32)
    raise ValueError(method)


def metrics(restored: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    p = float(peak_signal_noise_ratio(clean, restored, data_range=1.0))
    s = float(structural_similarity(clean, restored, data_range=1.0))
    return p, s


def evaluate_slices(enhancer, slices: list[torch.Tensor], degradation, levels: list[float], *,
                    methods: list[str] | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """Rows of (level, method, psnr, ssim, ms_per_image) averaged over ``slices`` (normalised (1, H, W))."""
    kind = degradation.kind
    methods = [baseline_name(kind), "medcnn", *classical_methods(kind)] if methods is None else methods
    rows = []
    for level in levels:
        gen = torch.Generator().manual_seed(seed + 7919)
        acc: dict[str, list] = {m: [] for m in methods}
        for x in slices:
            y, _ = degradation(x[None], gen, levels=torch.tensor([level]))
            clean, noisy = x[0].numpy(), y[0, 0].numpy()
            sigma = oracle_sigma(kind, level, noisy, clean)
            for m in methods:
                t0 = time.perf_counter()
                if m == "medcnn":
                    out = enhancer.restore_normalised(y)[0, 0].numpy()
                elif m in (*ORACLE, "bm3d-estimated"):
                    out = run_classical(m, noisy, sigma)
                else:
                    out = noisy
                ms = (time.perf_counter() - t0) * 1000
                acc[m].append((*metrics(out.astype(np.float32), clean), ms))
        oracles = [m for m in ORACLE if m in acc]  # the one to beat: the best baseline given the truth
        reference = max(oracles, key=lambda m: np.mean([v[0] for v in acc[m]])) if oracles else \
            (baseline_name(kind) if baseline_name(kind) in acc else None)
        for m, vals in acc.items():
            a = np.array(vals, dtype=np.float64)
            row = {"degradation": kind, "level": level, "method": m, "psnr": round(float(a[:, 0].mean()), 3),
                   "psnr_ci95": _rounded(mean_ci(a[:, 0]), 3), "ssim": round(float(a[:, 1].mean()), 4),
                   "ssim_ci95": _rounded(mean_ci(a[:, 1]), 4), "ms_per_image": round(float(a[:, 2].mean()), 2),
                   "n_images": len(vals), "per_image_psnr": [round(float(v), 3) for v in a[:, 0]],
                   "per_image_ssim": [round(float(v), 4) for v in a[:, 1]]}
            if m in ORACLE or m == "bm3d-estimated":
                row["baseline_sigma"] = "estimated" if m == "bm3d-estimated" else "oracle"
            if m == "medcnn" and reference is not None:  # paired: the same slices and noise for both
                b = np.array(acc[reference], dtype=np.float64)
                row[f"psnr_minus_{reference}"] = round(float((a[:, 0] - b[:, 0]).mean()), 3)
                row[f"psnr_minus_{reference}_ci95"] = _rounded(paired_difference_ci(a[:, 0], b[:, 0]), 3)
            rows.append(row)
    return rows


def _rounded(ci: list[float] | None, digits: int) -> list[float] | None:
    return [round(v, digits) for v in ci] if ci else None


def test_slices(plan, data, split: dict, part: str = "test", limit: int = MAX_SLICES) -> list[torch.Tensor]:
    """Up to ``limit`` evenly spread slices of the run's held-out part (single-channel (1, H, W))."""
    slices = load_slices(plan, data, part_pairs(plan, data, split, part))
    idx = np.unique(np.linspace(0, len(slices) - 1, min(limit, len(slices))).astype(int)) if slices else []
    return [slices[i] for i in idx]


def evaluate_enhance_run(enh: Enhancer, run: str | Path, split: str = "test", checkpoint: str = "best",
                         levels: list[float] | None = None, methods: list[str] | None = None,
                         limit: int = MAX_SLICES, data: str | None = None) -> dict[str, Any]:
    """PSNR / SSIM of the run's held-out ``split``, or of every image of another dataset ``data``
    (clean images never seen in training: a test set such as BSD68; up to ``limit`` slices, evenly
    spread); results in RUN/eval/enhance_<split>.* or enhance_<data>.*."""
    run = Path(run)
    plan = enh.plan
    sp = RunFolder(run).split()
    if data is None:
        source = load_enhance(plan.data)
        slices = test_slices(plan, source, sp, split, limit)
        pixel, name = pixel_mm(source, sp["train"]), split
    else:
        source = load_enhance(data)
        pairs = [(s.id, k) for s in source.sources for k in range(source.n_slices(s.id))]
        slices = load_slices(plan, source, pairs)
        slices = [slices[i] for i in np.unique(np.linspace(0, len(slices) - 1, min(limit, len(slices))).astype(int))] \
            if slices else []
        pixel, name, split = pixel_mm(source, [s.id for s in source.sources]), Path(data).name, "all"
    if not slices:
        raise RunFolderError(f"no {split!r} slices to evaluate" + (f" in {data}" if data else ""), run)
    if plan.preprocessing.channels != 1 and methods is None:
        methods = [baseline_name(plan.enhance.degradation), "medcnn"]
    deg = degradation_for(plan, pixel)
    levels = levels or eval_levels(plan.enhance.level, plan.enhance.degradation)
    rows = evaluate_slices(enh, slices, deg, levels, methods=methods, seed=plan.seed)
    report = {"run": str(run), "split": split, "data": data or plan.data, "checkpoint": checkpoint,
              "degradation": plan.enhance.degradation,
              "normalization": plan.preprocessing.normalization, "normalization_args": plan.preprocessing.normalization_args,
              "n_images": len(slices), "rows": rows}
    # the headline: medcnn at the first level evaluated (the model card's metric)
    head = next((r for r in rows if r["method"] == "medcnn"), None)
    if head is not None:
        report.update({"level": head["level"], **{k: head[k] for k in ("psnr", "psnr_ci95", "ssim", "ssim_ci95")}})
    out = RunFolder(run).eval_dir
    out.mkdir(exist_ok=True)
    atomic_write_json(out / f"enhance_{name}.json", report)
    lines = ["level,method,psnr,psnr_lo,psnr_hi,ssim,ms_per_image"] + [
        f"{r['level']},{r['method']},{r['psnr']},{r['psnr_ci95'][0]},{r['psnr_ci95'][1]},{r['ssim']},{r['ms_per_image']}"
        for r in rows]
    atomic_write_text(out / f"enhance_{name}.csv", "\n".join(lines) + "\n")
    images = ["level,method,image,psnr,ssim"] + [f"{r['level']},{r['method']},{i},{p},{q}" for r in rows
                                                for i, (p, q) in enumerate(zip(r["per_image_psnr"], r["per_image_ssim"]))]
    atomic_write_text(out / f"enhance_{name}_images.csv", "\n".join(images) + "\n")
    return report
