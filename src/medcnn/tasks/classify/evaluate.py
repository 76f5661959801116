"""``medcnn evaluate`` for classifiers: metrics JSON plus confusion-matrix, ROC and reliability PNGs."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from medcnn.data.classification import load_classification
from medcnn.data.preprocess import resize_batch
from medcnn.errors import InputError
from medcnn.infer.domain import DomainModel, fit_domain, unusual_share
from medcnn.infer.predictor import Predictor, probabilities
from medcnn.metrics.calibration import accuracy_coverage, fit_temperature
from medcnn.metrics.classification import classification_report, expected_calibration_error, reliability_curve
from medcnn.runs import RunFolder
from medcnn.utils.files import atomic_path, atomic_savefig, atomic_write_json


def load_domain(folder: RunFolder, checkpoint: str) -> DomainModel | None:
    """The run's input-domain statistics, if fitted for this checkpoint."""
    if not folder.domain_file.is_file():
        return None
    model = DomainModel.load(folder.domain_file)
    return model if model is not None and model.checkpoint == checkpoint else None


def fit_run_domain(pred: Predictor, ds, checkpoint: str) -> DomainModel | None:
    """Fit and save RUN/domain.npz from the run's training and validation images (None for an
    exported graph, which has no features to read)."""
    net = pred.feature_net
    if net is None or pred.run_dir is None:
        return None
    pre = pred.plan.preprocessing

    def sized(x):
        return x if list(x.shape[2:]) == list(pre.input_size) else resize_batch(torch.as_tensor(x), pre.input_size).numpy()

    (tx, _), (vx, _) = ds.split("train"), ds.split("val")
    model = fit_domain(net, sized(tx), sized(vx), modality=(pred.plan.fingerprint or {}).get("modality", ""),
                       checkpoint=checkpoint)
    model.save(RunFolder(pred.run_dir).domain_file)
    pred.domain = model
    return model


def evaluate_run(pred: Predictor, run: str | Path, split: str = "test", checkpoint: str = "best",
                 data: str | None = None) -> dict[str, Any]:
    """Evaluate a run's classifier ``pred`` (its ``checkpoint``) on ``split`` of its dataset, or of
    ``data`` (another dataset with the run's classes; ``split="all"``: every image of it); write eval/
    files. ``medcnn.tasks.evaluate(run, ...)`` loads the classifier."""
    run = Path(run)
    plan = pred.plan
    pre = plan.preprocessing
    ds = load_classification(data or plan.data, input_size=pre.input_size, channels=pre.channels,
                             normalization=pre.normalization, seed=plan.seed)
    if data is not None:
        _check_classes(ds.class_names, list(plan.class_names), data)
    images, labels = ds.split(split)
    if list(images.shape[2:]) != list(pre.input_size):  # e.g. --data breastmnist_64 for a 28-px model
        images = resize_batch(torch.as_tensor(images), pre.input_size).numpy()
    logits = pred.predict_logits(images)
    probs = probabilities(torch.from_numpy(logits), plan.label_type).numpy()
    report = classification_report(probs, labels, plan.label_type, plan.class_names)
    report.update(split=split, checkpoint=checkpoint, data=ds.source or ds.name, ensemble=plan.ensemble, tta=plan.tta)

    # temperature scaling, fitted on the run's own validation split only (never on the data evaluated)
    t = _run_temperature(run, checkpoint) if data is not None else None
    if t is None:
        own = ds if data is None else load_classification(plan.data, input_size=pre.input_size, channels=pre.channels,
                                                            normalization=pre.normalization, seed=plan.seed)
        val_images, val_labels = own.split("val")
        if list(val_images.shape[2:]) != list(pre.input_size):
            val_images = resize_batch(torch.as_tensor(val_images), pre.input_size).numpy()
        t = fit_temperature(pred.predict_logits(val_images), val_labels, plan.label_type)
    cal_probs = probabilities(torch.from_numpy(logits) / t, plan.label_type).numpy()
    report["calibration"] = {"method": "temperature scaling", "fitted_on": "val" if data is None else "the run's val",
                             "temperature": round(t, 4), "ece_before": report["ece"],
                             "ece_after": expected_calibration_error(cal_probs, labels, plan.label_type)}
    if plan.label_type != "multilabel":
        report["accuracy_coverage"] = accuracy_coverage(cal_probs, labels)
    if data is None:  # the run's own data: later `predict` calls use this temperature
        RunFolder(run).write_calibration(t, checkpoint)
        if load_domain(RunFolder(run), checkpoint) is None:  # runs trained before the domain check existed
            fit_run_domain(pred, ds, checkpoint)
    if pred.domain is not None and pred.feature_net is not None:  # false alarms of the domain check on this split
        report["domain"] = {"unusual_share": round(unusual_share(pred.domain, pred.feature_net, images), 4),
                            "threshold": round(pred.domain.threshold, 3), "fitted_on": "train (statistics), val (threshold)"}
    out = RunFolder(run).eval_dir
    out.mkdir(exist_ok=True)
    # another dataset's results sit beside the run's own: eval/<data>-<split>.json
    name = split if data is None else f"{Path(str(data)).name.split('.')[0]}-{split}"
    report["eval_name"] = name
    atomic_write_json(out / f"{name}.json", report)
    _plots(probs, labels, plan.label_type, plan.class_names, report, out, name, cal_probs)
    with atomic_path(out / f"{name}_probs.npy") as tmp, open(tmp, "wb") as fh:
        np.save(fh, probs)  # small; lets users recompute any metric
    return report


def _check_classes(names: list[str], run_names: list[str], data: str) -> None:
    """Another dataset's labels mean the run's classes only under the same names in the same order
    (an .npz without names numbers its classes: then the count must agree)."""
    numbered = names == [str(i) for i in range(len(names))]
    if (numbered and len(names) != len(run_names)) or (not numbered and names != run_names):
        raise InputError(f"its classes {names} are not the run's {run_names} (same names, same order): "
                         "the labels would be compared with the wrong classes", data)


def _run_temperature(run: Path, checkpoint: str) -> float | None:
    """The temperature an earlier ``evaluate`` fitted on the run's validation split, if any."""
    folder = RunFolder(run)
    return folder.temperature(checkpoint) if folder.calibration_file.is_file() else None


def _plots(probs, labels, label_type, names, report, out: Path, split: str, cal_probs=None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    short = [n if len(n) <= 14 else n[:12] + "…" for n in names]
    if "confusion_matrix" in report:
        cm = np.asarray(report["confusion_matrix"])
        k = len(names)
        fig, ax = plt.subplots(figsize=(2.2 + 0.55 * k, 1.8 + 0.5 * k))
        ax.imshow(cm, cmap="Blues")
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                        color="white" if cm[i, j] > cm.max() / 2 else "black", fontsize=8)
        ax.set_xticks(range(k), short, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(k), short, fontsize=8)
        ax.set_xlabel("predicted"), ax.set_ylabel("true"), ax.set_title(f"{split}: ACC {report['acc']:.3f}")
        fig.tight_layout()
        atomic_savefig(fig, out / f"{split}_confusion.png", dpi=110)
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    classes = [1] if label_type == "binary" else range(probs.shape[1])
    for k in classes:
        target = labels[:, k] if label_type == "multilabel" else (labels == k)
        if 0 < target.sum() < len(target):
            fpr, tpr, _ = roc_curve(target, probs[:, k])
            ax.plot(fpr, tpr, lw=1.2, label=short[k])
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("1 - specificity"), ax.set_ylabel("sensitivity"), ax.set_title(f"{split}: AUC {report['auc']:.3f}")
    if len(classes) <= 12:
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    atomic_savefig(fig, out / f"{split}_roc.png", dpi=110)
    plt.close(fig)

    if label_type != "multilabel":
        cal = report["calibration"]
        fig, ax = plt.subplots(figsize=(4.6, 4.2))
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        for p, label in ((probs, f"before: ECE {cal['ece_before']:.3f}"),
                         (cal_probs, f"after T={cal['temperature']:.2f}: ECE {cal['ece_after']:.3f}")):
            rows = reliability_curve(p, labels) if p is not None else []
            if rows:
                conf, acc, n = map(np.asarray, zip(*rows))
                line, = ax.plot(conf, acc, label=label)
                ax.scatter(conf, acc, s=10 + 200 * n / n.max(), color=line.get_color())
        ax.set_xlabel("confidence"), ax.set_ylabel("accuracy"), ax.set_title(f"{split}: reliability")
        ax.legend(fontsize=8, loc="upper left")
        fig.tight_layout()
        atomic_savefig(fig, out / f"{split}_reliability.png", dpi=110)
        plt.close(fig)

        cov = report["accuracy_coverage"]
        fig, ax = plt.subplots(figsize=(4.4, 4.0))
        ax.plot([r["coverage"] for r in cov], [r["accuracy"] for r in cov], "o-")
        ax.set_xlabel("coverage (fraction not referred)"), ax.set_ylabel("accuracy")
        ax.set_xlim(1.02, 0.45), ax.grid(alpha=0.3), ax.set_title(f"{split}: accuracy vs coverage (calibrated)")
        fig.tight_layout()
        atomic_savefig(fig, out / f"{split}_coverage.png", dpi=110)
        plt.close(fig)
