"""Classification metrics as MedMNIST defines them, computed by scikit-learn / torchmetrics.

- binary: AUC of the positive-class probability; ACC at argmax (= threshold 0.5).
- multi-class: AUC = macro mean of one-vs-rest AUCs; ACC at argmax.
- multi-label: AUC = macro mean over labels; ACC = mean per-label accuracy at 0.5.
Also per-class sensitivity/specificity, the confusion matrix and the expected calibration
error (top-label ECE, 15 bins).
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
    }
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
