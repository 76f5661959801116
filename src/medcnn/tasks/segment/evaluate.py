"""Evaluate a segmentation run on its held-out cases, on each image's own grid and in mm.

Per case and label: Dice, IoU (MONAI), HD95 and average symmetric surface distance in mm (MONAI,
with the image spacing), reference and predicted volume (mm³ / mm²). With field-of-view masks and
one foreground label (vessels): pixel AUC, accuracy, sensitivity, specificity and F1 inside the
field of view, pooled over all pixels of the split's images, as the DRIVE literature reports them.

Post-processing (keep each label's largest component) is chosen here on the validation cases,
once per run, and written to RUN/postprocess.json for predict to use.

A cross-validation ensemble (``segment.split.fold: cv``) validates out-of-fold, as nnU-Net does: each
validation case is predicted by the one member that did not train on it; test cases by all members.
"""
from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medcnn.data.segmentation import load_segmentation, read_case
from medcnn.errors import RunFolderError
from medcnn.infer.seg_outputs import save_overlay
from medcnn.infer.segmenter import POSTPROCESS, Segmenter, postprocess, to_label
from medcnn.measure import voxel_size_mm
from medcnn.measure.components import unit as size_unit
from medcnn.metrics.intervals import mean_ci
from medcnn.models.ensemble import MeanEnsemble
from medcnn.runs import RunFolder
from medcnn.train.seg_data import cases_of
from medcnn.utils.files import atomic_path, atomic_savefig, atomic_write_json

CASE_METRICS = ("dice", "iou", "nsd", "hd95_mm", "assd_mm")
SLICE_METRICS = ("fp_mm2_empty_slices", "empty_slices_with_fp")  # 3D cases only
EMPTY_RULE = ("a label absent from reference and prediction: Dice = IoU = NSD = 1, distances left out; "
              "absent from one only: 0, distances = the image diagonal (mm)")
INTERVALS = "95 % percentile bootstrap over cases, 2000 resamples (medcnn.metrics.intervals)"


def surface_metrics(pred: np.ndarray, ref: np.ndarray, labels: list[int], spacing,
                    distances: bool = True, tolerances_mm: dict[int, float] | None = None) -> dict[int, dict[str, float]]:
    """Dice, IoU, normalised surface Dice (NSD, at ``tolerances_mm[label]``, default one voxel: the
    largest spacing), HD95 (mm) and ASSD (mm) per label.

    Empty masks (Metrics Reloaded's advice): a label absent from both reference and prediction
    scores Dice = IoU = NSD = 1 and no distance (NaN, left out of means); a label in only one of them
    scores 0 and, for the distances, the image's diagonal in mm (the worst possible)."""
    from monai.metrics import (
        compute_average_surface_distance,
        compute_dice,
        compute_hausdorff_distance,
        compute_iou,
        compute_surface_dice,
    )

    k = max(labels) + 1
    p = torch.nn.functional.one_hot(torch.as_tensor(pred.astype(np.int64)), k).movedim(-1, 0)[None]
    r = torch.nn.functional.one_hot(torch.as_tensor(ref.astype(np.int64)), k).movedim(-1, 0)[None]
    dice = compute_dice(p, r, include_background=True, ignore_empty=False)[0]
    iou = compute_iou(p, r, include_background=True, ignore_empty=False)[0]
    spacing = [float(s) for s in spacing]
    diagonal = float(np.sqrt(sum((n * s) ** 2 for n, s in zip(pred.shape, spacing))))
    out = {}
    for lab in labels:
        pl, rl = p[:, lab:lab + 1], r[:, lab:lab + 1]
        two = (torch.cat([1 - pl, pl], 1), torch.cat([1 - rl, rl], 1))
        tol = float((tolerances_mm or {}).get(lab, max(spacing)))
        if not distances:
            nsd = hd = asd = float("nan")
        elif pl.any() and rl.any():
            nsd = float(compute_surface_dice(*two, [tol], spacing=spacing, use_subvoxels=False)[0, 0])
            hd = float(compute_hausdorff_distance(*two, percentile=95, spacing=spacing)[0, 0])
            asd = float(compute_average_surface_distance(*two, symmetric=True, spacing=spacing)[0, 0])
        elif pl.any() or rl.any():
            nsd, hd, asd = 0.0, diagonal, diagonal
        else:
            nsd, hd, asd = 1.0, float("nan"), float("nan")
        out[lab] = {"dice": float(dice[lab]), "iou": float(iou[lab]), "nsd": nsd, "nsd_tolerance_mm": tol,
                    "hd95_mm": hd, "assd_mm": asd}
    return out


def empty_slice_false_positives(pred: np.ndarray, ref: np.ndarray, lab: int, spacing) -> dict[str, float]:
    """On the slices (last axis) of a 3D case whose reference holds no ``lab``: the predicted area
    per slice (mm², mean) and the share of those slices with any prediction (the false alarms a
    reader would see slice by slice; LGG has tumour on 35 % of its slices). NaN when there is no
    such slice."""
    empty = ~(ref == lab).any(axis=(0, 1))
    if pred.ndim != 3 or not empty.any():
        return {"fp_mm2_empty_slices": float("nan"), "empty_slices_with_fp": float("nan")}
    area = (pred[..., empty] == lab).sum(axis=(0, 1)) * float(spacing[0]) * float(spacing[1])
    return {"fp_mm2_empty_slices": float(area.mean()), "empty_slices_with_fp": float((area > 0).mean())}


def _slice_means(rows: list[dict], name: str) -> dict[str, float]:
    """The mean over cases of each empty-slice metric of label ``name`` (3D cases that have one)."""
    out = {}
    for k in SLICE_METRICS:
        v = np.array([r.get(f"{name}_{k}", np.nan) for r in rows], dtype=float)
        if np.isfinite(v).any():
            out[k] = float(np.nanmean(v))
    return out


SCORE_BINS = 10_000


def score_histograms(scores: np.ndarray, truth: np.ndarray, bins: int = SCORE_BINS) -> dict[str, np.ndarray]:
    """Counts of positive and negative pixels per probability bin: enough to pool precision-recall
    and ROC curves over several runs (cross-validation folds) without keeping every pixel."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    return {"edges": edges, "pos": np.histogram(scores[truth], edges)[0], "neg": np.histogram(scores[~truth], edges)[0]}


def average_precision_from_histograms(pos: np.ndarray, neg: np.ndarray) -> float:
    """Area under the precision-recall curve (average precision) from binned scores, thresholds at the
    bin edges from high to low (within a 1/bins score resolution of the exact value)."""
    tp, fp = np.cumsum(pos[::-1]), np.cumsum(neg[::-1])
    if tp[-1] == 0:
        return float("nan")
    precision = tp / np.maximum(tp + fp, 1)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))


def pixel_aupr(probs: np.ndarray, ref: np.ndarray, fov: np.ndarray) -> float:
    """Average precision of the foreground probabilities inside the field of view (NaN without
    foreground)."""
    from sklearn.metrics import average_precision_score

    inside = fov.astype(bool)
    y = ref[inside].astype(bool)
    return float(average_precision_score(y, probs[inside])) if y.any() else float("nan")


def fov_pixel_metrics(probs: np.ndarray, ref: np.ndarray, fov: np.ndarray) -> dict[str, float]:
    """Pooled pixel metrics inside the field of view for a binary task (probs of the foreground):
    ROC AUC, the area under the precision-recall curve (average precision, as the IDRiD challenge
    ranks lesion segmentation: tiny lesions make ROC AUC near 1 whatever the quality), and the
    counts at p = 0.5."""
    from sklearn.metrics import roc_auc_score

    inside = fov.astype(bool)
    p, y = probs[inside], ref[inside].astype(bool)
    pred = p >= 0.5
    tp, tn = int((pred & y).sum()), int((~pred & ~y).sum())
    fp, fn = int((pred & ~y).sum()), int((~pred & y).sum())
    return {"auc": float(roc_auc_score(y, p)), "aupr": pixel_aupr(probs, ref, fov),
            "acc": (tp + tn) / max(len(y), 1),
            "sensitivity": tp / max(tp + fn, 1), "specificity": tn / max(tn + fp, 1),
            "f1": 2 * tp / max(2 * tp + fp + fn, 1), "pixels": int(len(y))}


def load_run_data(run: Path):
    """(plan, dataset, split) of a segmentation run folder."""
    folder = RunFolder(run)
    if not folder.is_run() or not folder.has_split():
        raise RunFolderError("not a segmentation run folder (needs plan.yaml and split.json)", run)
    plan = folder.plan()
    return plan, load_segmentation(plan.data), folder.split()


class CaseSegmenters:
    """The Segmenter for each case of a split: the run's own, or on the validation cases of a
    cross-validation ensemble the member whose validation fold holds the case (its network taken
    from the ensemble's, run with the ensemble's plan: same test-time views, window and overlap)."""

    def __init__(self, run: Path, seg: Segmenter, splits: dict[str, Any], split: str):
        self.seg, self.owner, self.members = seg, {}, []
        if split == "val" and splits.get("folds") and isinstance(seg.net, MeanEnsemble):
            self.members = [Segmenter(seg.plan, net, run) for net in seg.net.members]
            self.owner = {c: i for i, fold in enumerate(splits["folds"]) for c in fold}

    def __call__(self, case_id: str) -> Segmenter:
        return self.members[self.owner[case_id]] if case_id in self.owner else self.seg

    def set_post(self, mode: str, threshold: float = 0.5, mirror: bool = True) -> None:
        for s in [self.seg, *self.members]:
            s.post, s.threshold, s.mirror = mode, threshold, mirror


THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))  # a one-label task's candidates (0.05 ... 0.95)


def choose_postprocess(segs: CaseSegmenters, data, ids: list[str], run: Path) -> dict[str, Any]:
    """On the validation cases: whether the plan's mirrored test-time views beat one view (they cost
    2-8x the time: kept only when their best mean Dice is higher); with one foreground label, the
    probability threshold with the best mean Dice (0.5 unless another beats it: small, scattered
    lesions often want less); then the post-processing (none, keep largest component, fill holes,
    both) with the best mean Dice at that threshold ("none" unless another beats it). Saved to
    RUN/postprocess.json."""
    k = segs.seg.plan.num_classes
    labels = list(range(1, k))
    mirrored = bool(segs.seg.plan.mirror_tta)
    cases = {True: [], False: []}  # mirrored views or one view: (probabilities, reference, field of view, spacing)
    for case in cases_of(data, ids):
        image, ref, fov = read_case(case, data.labels)
        s = segs(case.id)
        inside = fov.array[0] > 0 if (fov is not None and s.plan.segment.use_fov) else None
        for views in ((True, False) if mirrored else (False,)):
            cases[views].append((s.probabilities(image, flips=views), ref.array[0], inside,
                                 image.spacing))

    def mean_dice(views: bool, threshold: float, mode: str) -> float:
        scores = []
        for probs, ref, inside, spacing in cases[views]:
            p = postprocess(to_label(probs, threshold), mode, k)
            a, b = (p, ref) if inside is None else (np.where(inside, p, 0), np.where(inside, ref, 0))
            m = surface_metrics(a, b, labels, spacing, distances=False)
            scores.append(float(np.mean([m[lab]["dice"] for lab in labels])))
        return round(float(np.mean(scores)), 5)

    def best(views: bool) -> dict[str, Any]:
        threshold, by_threshold = 0.5, {}
        if k == 2:
            by_threshold = {t: mean_dice(views, t, "none") for t in THRESHOLDS}
            threshold = max(by_threshold, key=lambda t: (by_threshold[t] - (1e-4 if t != 0.5 else 0.0)))
        means = {m: mean_dice(views, threshold, m) for m in POSTPROCESS}
        post = max(means, key=lambda m: (means[m] - (1e-4 if m != "none" else 0.0)))
        return {"postprocess": post, "val_dice": means, "threshold": threshold, "score": means[post],
                **({"val_dice_by_threshold": {str(t): v for t, v in by_threshold.items()}} if by_threshold else {})}

    single = best(False)
    choice, keep, compared = single, False, {}
    if mirrored:
        views = best(True)
        keep = views["score"] > single["score"]
        choice = views if keep else single
        compared = {"val_dice_mirrored_views": views["score"], "val_dice_one_view": single["score"]}
    choice = {**{key: v for key, v in choice.items() if key != "score"}, **compared, "mirror_views": keep,
              "n_val": len(ids)}
    RunFolder(run).write_postprocess(choice)
    segs.set_post(choice["postprocess"], choice["threshold"], choice["mirror_views"])
    return choice


def evaluate_segment_run(seg: Segmenter, run: str | Path, split: str = "test", checkpoint: str = "best",
                         overlays: int = 4, cases: list[str] | None = None) -> dict[str, Any]:
    """Evaluate a run's segmenter ``seg`` on ``split`` of its cases (``cases``: only these of them,
    reported as ``<split>-subset``); reports and figures in RUN/eval/. ``medcnn.tasks.evaluate(run, ...)``
    loads the segmenter."""
    import resource

    run = Path(run)
    plan, data, splits = load_run_data(run)
    if split not in splits or not splits[split]:
        raise RunFolderError(f"the run's split.json has no {split!r} cases", run)
    chosen, tag = splits[split], split
    if cases:
        wanted = set(cases)
        missing = sorted(wanted - set(chosen))
        if missing:
            raise RunFolderError(f"cases {missing} are not in the run's {split!r} split", run)
        chosen, tag = [c for c in chosen if c in wanted], f"{split}-subset"
    segs = CaseSegmenters(run, seg, splits, split)
    post = RunFolder(run).postprocess_record() or \
        choose_postprocess(segs if split == "val" else CaseSegmenters(run, seg, splits, "val"),
                           data, splits["val"], run)
    segs.set_post(post["postprocess"], float(post.get("threshold", 0.5)), bool(post.get("mirror_views", True)))
    labels = list(range(1, plan.num_classes))
    names = {lab: plan.class_names[lab] for lab in labels}
    tolerances = {lab: float(plan.segment.nsd_tolerance_mm[n]) for lab, n in names.items()
                  if n in plan.segment.nsd_tolerance_mm}
    rows, times, pooled, units = [], [], {"probs": [], "ref": [], "fov": []}, set()
    out_dir = RunFolder(run).eval_dir
    out_dir.mkdir(exist_ok=True)
    for i, case in enumerate(cases_of(data, chosen)):
        image, ref, fov = read_case(case, data.labels)
        t0 = time.perf_counter()
        result = segs(case.id).segment(image, keep_probs=plan.segment.use_fov)
        times.append(time.perf_counter() - t0)
        pred = result.label.array[0]
        if plan.segment.use_fov and fov is not None:  # metrics count the field of view only
            pred = np.where(fov.array[0] > 0, pred, 0)
        m = surface_metrics(pred, ref.array[0], labels, image.spacing, tolerances_mm=tolerances)
        vox = voxel_size_mm(image.affine)
        units.add(size_unit(image))  # voxels where a file gives no voxel size; joined if cases differ
        row = {"case": case.id, "seconds": round(times[-1], 3)}
        for lab in labels:
            n = names[lab]
            row.update({f"{n}_{k}": round(v, 5) for k, v in m[lab].items()})
            if pred.ndim == 3:
                fp = empty_slice_false_positives(pred, ref.array[0], lab, image.spacing)
                row.update({f"{n}_{k}": round(v, 4) for k, v in fp.items()})
            row[f"{n}_ref_size"] = round(float((ref.array[0] == lab).sum()) * vox, 2)
            row[f"{n}_pred_size"] = round(float((pred == lab).sum()) * vox, 2)
        rows.append(row)
        if plan.segment.use_fov and fov is not None and len(labels) == 1:
            pooled["probs"].append(result.probs[1].ravel())
            pooled["ref"].append(ref.array[0].ravel())
            pooled["fov"].append(fov.array[0].ravel())
            row["aupr"] = round(pixel_aupr(pooled["probs"][-1], pooled["ref"][-1], pooled["fov"][-1]), 5)
        if i < overlays:
            save_overlay(image, result.label, out_dir / f"{tag}_{case.id}_overlay.png", reference=ref)
    per_label = {}
    for lab in labels:
        n = names[lab]
        vals = {k: np.array([r[f"{n}_{k}"] for r in rows], dtype=float) for k in CASE_METRICS}
        refs = np.array([r[f"{n}_ref_size"] for r in rows])
        preds = np.array([r[f"{n}_pred_size"] for r in rows])
        corr = float(np.corrcoef(refs, preds)[0, 1]) if len(rows) > 2 and refs.std() > 0 and preds.std() > 0 else float("nan")
        per_label[n] = {**{k: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for k, v in vals.items()},
                        **{f"{k}_ci95": mean_ci(v) for k, v in vals.items()},
                        "nsd_tolerance_mm": rows[0][f"{n}_nsd_tolerance_mm"],
                        "ref_size_mean": float(refs.mean()), "pred_size_mean": float(preds.mean()),
                        "size_correlation": corr, **_slice_means(rows, n),
                        "size_abs_error_pct": float(np.mean(np.abs(preds - refs) / np.maximum(refs, 1e-9)) * 100)}
    report: dict[str, Any] = {
        "split": split, **({"cases": chosen} if cases else {}), "n": len(rows), "checkpoint": checkpoint, "data": plan.data, "postprocess": post,
        "tta_flips": plan.mirror_tta if segs.seg.mirror else [], "tta_shift": plan.segment.tta_shift,
        "ensemble": plan.ensemble,
        "out_of_fold": bool(segs.members),
        "dice_mean": float(np.mean([v["dice"] for v in per_label.values()])),
        "dice_mean_ci95": mean_ci(np.mean([[r[f"{n}_dice"] for n in names.values()] for r in rows], axis=1)),
        "nsd_mean": float(np.nanmean([v["nsd"] for v in per_label.values()])),
        "nsd_mean_ci95": mean_ci(np.nanmean([[r[f"{n}_nsd"] for n in names.values()] for r in rows], axis=1)),
        "empty_reference_rule": EMPTY_RULE, "intervals": INTERVALS,
        "per_label": per_label, "size_unit": " / ".join(sorted(units)),
        "infer_s_per_case": float(np.mean(times)), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if pooled["probs"]:
        probs, ref, inside = (np.concatenate(pooled[k]) for k in ("probs", "ref", "fov"))
        report["fov"] = fov_pixel_metrics(probs, ref, inside)
        inside = inside.astype(bool)
        scores, truth = probs[inside], ref[inside].astype(bool)
        with atomic_path(out_dir / f"{tag}_fov_scores.npz") as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **score_histograms(scores, truth))  # pooled PR/ROC curves across runs
        per_image = np.array([r["aupr"] for r in rows], dtype=float)
        report["fov"].update(aupr_per_image_mean=float(np.nanmean(per_image)) if np.isfinite(per_image).any()
                             else float("nan"), aupr_per_image_ci95=mean_ci(per_image))
    atomic_write_json(out_dir / f"{tag}_segment.json", report)
    with atomic_path(out_dir / f"{tag}_cases.csv") as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    _plot_sizes(rows, names, report["size_unit"], out_dir / f"{tag}_volumes.png")
    return report


def _plot_sizes(rows, names, unit, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    hi = 0.0
    for n in names.values():
        r = [row[f"{n}_ref_size"] for row in rows]
        p = [row[f"{n}_pred_size"] for row in rows]
        ax.scatter(r, p, s=12, label=n, alpha=0.7)
        hi = max(hi, max(r + p))
    ax.plot([0, hi], [0, hi], "k--", lw=0.8)
    ax.set_xlabel(f"reference ({unit})"), ax.set_ylabel(f"predicted ({unit})"), ax.legend(), ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
