"""``medcnn predict`` for a classifier: one result per input (class probabilities), nothing written
beside the inputs."""
from __future__ import annotations

from pathlib import Path

from medcnn.infer.predictor import Predictor
from medcnn.tasks.base import Table


class ClassifyJob:
    out_dir = None  # results only: no files per input
    keep_phi = False

    def __init__(self, pred: Predictor, run: Path, checkpoint: str, max_uncertainty: float | None):
        self.pred, self.run, self.checkpoint, self.max_uncertainty = pred, run, checkpoint, max_uncertainty
        names = pred.plan.class_names or [str(i) for i in range(pred.plan.num_classes)]
        multilabel = pred.plan.label_type == "multilabel"
        self.fields = (["labels"] if multilabel else ["prediction", "confidence"]) + [f"p_{n}" for n in names]

    def one(self, path: Path, dest: Path | None = None) -> dict:
        return self.pred.predict_files([path], max_uncertainty=self.max_uncertainty)[0]

    def row(self, r: dict) -> dict:
        flat = {k: r.get(k) for k in ("file", "prediction", "confidence", "labels", "error")}
        flat.update({f"p_{k}": v for k, v in r.get("probabilities", {}).items()})
        return flat

    def table(self, results: list[dict]) -> Table:
        t = Table(f"{self.run} ({self.checkpoint})", ["file", "prediction", "probabilities"])
        for r in results:
            if "error" in r:
                continue
            probs = "  ".join(f"{k}: {v:.3f}" for k, v in r["probabilities"].items())
            t.rows.append([Path(r["file"]).name, str(r.get("prediction", r.get("labels"))), probs])
        return t
