"""Classification metrics as MedMNIST defines them, computed by scikit-learn / torchmetrics.

- binary: AUC of the positive-class probability; ACC at argmax (= threshold 0.5).
- multi-class: AUC = macro mean of one-vs-rest AUCs; ACC at argmax.
- multi-label: AUC = macro mean over labels; ACC = mean per-label accuracy at 0.5.
Also per-class sensitivity/specificity, the confusion matrix, the expected calibration error
(top-label ECE, 15 bins), the Brier score, and 95 % bootstrap intervals of AUC, ACC, ECE and
Brier (stratified by class; see medcnn.metrics.intervals; ECE's is corrected for the upward
bias of resampling, see classification_intervals).

Brier score: the mean squared distance between the probabilities and the one-hot truth, over all
classes (Brier's 1950 definition: 0 is perfect, 2 the worst; a binary task counts both classes);
multi-label: the mean over labels of the per-label binary score.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np


def auc_score(probs: np.ndarray, labels: np.ndarray, label_type: str) -> float:
    from sklearn.metrics import roc_auc_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if label_type == "binary":
            if len(np.unique(labels)) < 2:
                return float("nan")
            return float(roc_auc_score(labels, probs[:, 1]))
        aucs = []
        for k in range(probs.shape[1]):
            target = labels[:, k] if label_type == "multilabel" else (labels == k)
            if 0 < target.sum() < len(target):
                aucs.append(roc_auc_score(target, probs[:, k]))
        return float(np.mean(aucs)) if aucs else float("nan")


def accuracy(probs: np.ndarray, labels: np.ndarray, label_type: str) -> float:
    if label_type == "multilabel":
        return float(((probs > 0.5) == (labels > 0.5)).mean())
    return float((probs.argmax(1) == labels).mean())


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, label_type: str, n_bins: int = 15) -> float:
    import torch
    from torchmetrics.functional.classification import binary_calibration_error, multiclass_calibration_error

    p = torch.as_tensor(probs, dtype=torch.float32)
    y = torch.as_tensor(labels)
    if label_type == "multilabel":  # mean of per-label binary ECEs
        return float(np.mean([binary_calibration_error(p[:, k], y[:, k].long(), n_bins=n_bins).item()
                              for k in range(p.shape[1])]))
    return float(multiclass_calibration_error(p, y.long(), num_classes=p.shape[1], n_bins=n_bins, norm="l1"))


def _case_terms(probs: np.ndarray, labels: np.ndarray, label_type: str) -> dict[str, np.ndarray]:
    """Per-case accuracy and Brier terms, and the (confidence, correct) pairs ECE bins."""
    if label_type == "multilabel":
        y = labels > 0.5
        return {"acc": ((probs > 0.5) == y).mean(1), "brier": ((probs - y) ** 2).mean(1),
                "conf": probs, "correct": y.astype(np.float64)}
    onehot = np.eye(probs.shape[1])[labels]
    return {"acc": (probs.argmax(1) == labels).astype(np.float64), "brier": ((probs - onehot) ** 2).sum(1),
            "conf": probs.max(1)[:, None], "correct": (probs.argmax(1) == labels).astype(np.float64)[:, None]}


def brier_score(probs: np.ndarray, labels: np.ndarray, label_type: str) -> float:
    return float(_case_terms(probs, labels, label_type)["brier"].mean())


def _ece_batch(conf: np.ndarray, correct: np.ndarray, idx: np.ndarray, n_bins: int = 15) -> np.ndarray:
    """ECE (torchmetrics' binning: bucketize right, one extra bin for confidence 1) of each index row
    of ``idx`` (B, n); ``conf``/``correct`` are (n, K) columns scored separately and averaged."""
    edges = np.linspace(0, 1, n_bins + 1, dtype=np.float32)
    out = np.zeros(len(idx))
    b, n = idx.shape
    for k in range(conf.shape[1]):
        bins = np.searchsorted(edges, conf[:, k].astype(np.float32), side="right") - 1  # = bucketize(right=True) - 1
        nb = n_bins + 1
        flat = (bins[idx] + nb * np.arange(b)[:, None]).ravel()
        gap = np.bincount(flat, weights=(correct[:, k] - conf[:, k].astype(np.float32))[idx].ravel(), minlength=b * nb)
        out += np.abs(gap.reshape(b, nb)).sum(1) / n
    return out / conf.shape[1]


def _auc_batch(probs: np.ndarray, labels: np.ndarray, label_type: str, idx: np.ndarray) -> np.ndarray:
    from medcnn.metrics.intervals import resampled_auc

    columns = [1] if label_type == "binary" else range(probs.shape[1])
    aucs = []
    for k in columns:
        target = labels[:, k] > 0.5 if label_type == "multilabel" else labels == k
        if 0 < target.sum() < len(target):
            aucs.append(resampled_auc(probs[:, k], target, idx))
    return np.nanmean(aucs, axis=0) if aucs else np.full(len(idx), np.nan)


def classification_intervals(probs: np.ndarray | list[np.ndarray], labels: np.ndarray,
                             label_type: str) -> dict[str, list[float] | None]:
    """95 % bootstrap intervals of AUC, ACC, ECE and Brier, stratified by class. ``probs`` may be a
    list (one array per seed): then each resample averages the seeds' metrics (the seed-mean's interval)."""
    from medcnn.metrics.intervals import bootstrap, interval

    runs = probs if isinstance(probs, list) else [probs]
    terms = [_case_terms(p, labels, label_type) for p in runs]
    stats = {
        "auc": lambda idx: np.mean([_auc_batch(p, labels, label_type, idx) for p in runs], axis=0),
        "acc": lambda idx: np.mean([t["acc"][idx].mean(1) for t in terms], axis=0),
        "ece": lambda idx: np.mean([_ece_batch(t["conf"], t["correct"], idx) for t in terms], axis=0),
        "brier": lambda idx: np.mean([t["brier"][idx].mean(1) for t in terms], axis=0),
    }
    out = {}
    for name, f in stats.items():
        values = bootstrap(f, len(labels), strata=labels)
        if name == "ece":
            # duplicated cases add noise that ECE counts as miscalibration, so resampled ECEs sit above
            # the estimate: move them down by that bias (mean of the resamples - estimate), floor 0
            values = np.maximum(values - (np.nanmean(values) - f(np.arange(len(labels))[None])[0]), 0.0)
        out[name] = interval(values)
    return out


def reliability_curve(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15):
    """Per confidence bin: (mean confidence, accuracy, count), for the top-label reliability diagram."""
    conf = probs.max(1)
    correct = probs.argmax(1) == labels
    edges = np.linspace(0, 1, n_bins + 1)
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            rows.append((float(conf[m].mean()), float(correct[m].mean()), int(m.sum())))
    return rows


def classification_report(probs: np.ndarray, labels: np.ndarray, label_type: str,
                          class_names: list[str]) -> dict[str, Any]:
    """Every number `medcnn evaluate` writes, as plain data."""
    from sklearn.metrics import confusion_matrix

    out: dict[str, Any] = {
        "n": int(len(labels)),
        "auc": auc_score(probs, labels, label_type),
        "acc": accuracy(probs, labels, label_type),
        "ece": expected_calibration_error(probs, labels, label_type),
        "brier": brier_score(probs, labels, label_type),
    }
    out.update({f"{k}_ci95": v for k, v in classification_intervals(probs, labels, label_type).items()})
    per_class = {}
    if label_type == "multilabel":
        pred = probs > 0.5
        for k, name in enumerate(class_names):
            per_class[name] = _sens_spec(pred[:, k], labels[:, k] > 0.5)
    else:
        pred = probs.argmax(1)
        cm = confusion_matrix(labels, pred, labels=list(range(len(class_names))))
        out["confusion_matrix"] = cm.tolist()
        for k, name in enumerate(class_names):
            per_class[name] = _sens_spec(pred == k, labels == k)
    out["per_class"] = per_class
    return out


def _sens_spec(pred: np.ndarray, true: np.ndarray) -> dict[str, float | int]:
    tp = int((pred & true).sum())
    tn = int((~pred & ~true).sum())
    fp = int((pred & ~true).sum())
    fn = int((~pred & true).sum())
    return {
        "support": tp + fn,
        "sensitivity": tp / (tp + fn) if tp + fn else float("nan"),
        "specificity": tn / (tn + fp) if tn + fp else float("nan"),
    }
