"""``medcnn predict`` for a classifier: one result per input (class probabilities), nothing written
beside the inputs."""
from __future__ import annotations

from pathlib import Path

from medcnn.infer.domain import IN_DOMAIN
from medcnn.infer.predictor import Predictor
from medcnn.tasks.base import OutputJob, Table


class ClassifyJob(OutputJob):
    out_dir = None  # results only: no files per input

    def __init__(self, pred: Predictor, run: Path, checkpoint: str, max_uncertainty: float | None,
                 allow_out_of_domain: bool = False):
        self.pred, self.run, self.checkpoint, self.max_uncertainty = pred, run, checkpoint, max_uncertainty
        pred.allow_out_of_domain = allow_out_of_domain
        names = pred.plan.class_names or [str(i) for i in range(pred.plan.num_classes)]
        multilabel = pred.plan.label_type == "multilabel"
        self.fields = (["labels"] if multilabel else ["prediction", "confidence"]) + [f"p_{n}" for n in names] + \
            ["domain", "domain_reasons"]

    def one(self, path: Path, dest: Path | None = None) -> dict:
        return self.pred.predict_file(path, max_uncertainty=self.max_uncertainty)

    def row(self, r: dict) -> dict:
        flat = {k: r.get(k) for k in ("file", "prediction", "confidence", "labels", "error")}
        flat.update({f"p_{k}": v for k, v in r.get("probabilities", {}).items()})
        if "domain" in r:
            flat["domain"], flat["domain_reasons"] = r["domain"]["verdict"], "; ".join(r["domain"]["reasons"])
        return flat

    def table(self, results: list[dict]) -> Table:
        t = Table(f"{self.run} ({self.checkpoint})", ["file", "prediction", "probabilities", "domain"])
        for r in results:
            if "error" in r:
                continue
            probs = "  ".join(f"{k}: {v:.3f}" for k, v in r["probabilities"].items())
            verdict = r.get("domain", {}).get("verdict", "")
            t.rows.append([Path(r["file"]).name, str(r.get("prediction", r.get("labels"))), probs, verdict])
            if verdict not in ("", IN_DOMAIN):
                t.notes.append(f"{Path(r['file']).name}: {verdict}: {'; '.join(r['domain']['reasons'])}")
        if any(r.get("refused") for r in results):
            t.notes.append("foreign inputs get no class; --allow-out-of-domain predicts them anyway")
        return t
