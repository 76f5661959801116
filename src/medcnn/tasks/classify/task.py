"""The classification task: what medcnn asks of it (:class:`medcnn.tasks.base.Task`)."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch

from medcnn.data.classification import ClassificationData, load_classification
from medcnn.data.groups import duplicates_across_splits
from medcnn.errors import MedcnnError
from medcnn.infer.explain import base_network, saliency, write_explanation
from medcnn.infer.predictor import Predictor
from medcnn.plan import Plan
from medcnn.planning.classify import default_plan
from medcnn.runs import RunFolder
from medcnn.tasks.base import Table, Task, TrainingSetup, with_ci
from medcnn.tasks.classify.evaluate import evaluate_run, fit_run_domain, load_domain
from medcnn.tasks.classify.export import graph, parity
from medcnn.tasks.classify.module import ClassificationTask, build_network
from medcnn.tasks.classify.outputs import ClassifyJob
from medcnn.tasks.preview import augmented_rows
from medcnn.train.loaders import array_loader
from medcnn.transforms.augment import BatchAugment
from medcnn.utils.files import atomic_write_json

log = logging.getLogger(__name__)


class Classify(Task):
    name = "classify"
    capabilities = frozenset({"predict", "evaluate", "export", "explain"})
    intended_use = ("Assigns an image to one of the classes below, with calibrated probabilities and a Grad-CAM map "
                    "of where the network looked.")
    detect_order = 100  # the fallback of --task auto

    # ---- data and plan ------------------------------------------------------------------------
    def detect(self, data: str, options: argparse.Namespace) -> bool:
        return True

    def load_data(self, data: str, plan: Plan | None = None) -> ClassificationData:
        if plan is None:
            return load_classification(data)
        pre = plan.preprocessing
        return load_classification(data, input_size=pre.input_size, channels=pre.channels, normalization=pre.normalization,
                                   seed=plan.seed)

    def default_plan(self, dataset: ClassificationData, source: str, options: argparse.Namespace) -> Plan:
        return default_plan(dataset, source)

    def describe_plan(self, plan: Plan) -> str:
        return (f"{plan.model.name} {plan.preprocessing.input_size}, {plan.epochs} epochs, batch {plan.batch_size}, "
                f"augment {plan.augment.preset}")

    def check_data(self, plan: Plan, dataset: ClassificationData) -> None:
        if plan.num_classes != dataset.num_classes or plan.label_type != dataset.label_type:
            raise MedcnnError(f"the plan is for {plan.num_classes} {plan.label_type} classes but the data has "
                              f"{dataset.num_classes} {dataset.label_type} classes")
        if plan.preprocessing.channels != dataset.channels or plan.spatial_dims != dataset.spatial_dims:
            raise MedcnnError(f"the plan expects {plan.preprocessing.channels}-channel {plan.spatial_dims}D images; "
                              f"the data has {dataset.channels}-channel {dataset.spatial_dims}D")
        if list(dataset.images["train"].shape[2:]) != list(plan.preprocessing.input_size):
            raise MedcnnError(f"the data's images are {list(dataset.images['train'].shape[2:])} but the plan's "
                              f"input_size is {plan.preprocessing.input_size}; use the matching --size or re-plan")
        net = build_network(plan).eval()
        try:  # a network whose pooling leaves nothing of a small image fails here, not mid-training
            with torch.no_grad():
                net(torch.zeros(1, plan.preprocessing.channels, *plan.preprocessing.input_size))
        except RuntimeError as e:
            raise MedcnnError(f"{plan.model.name} cannot take {plan.preprocessing.input_size} inputs "
                              f"({str(e).splitlines()[0]}): use a larger --size or another --model") from None

    def describe_training(self, plan: Plan, dataset: ClassificationData, run_dir: Path) -> str:
        return (f"training {plan.model.name} on {dataset.name} ({len(dataset.labels['train'])} train / "
                f"{len(dataset.labels['val'])} val), {plan.epochs} epochs -> {run_dir}")

    def describe_result(self, plan: Plan, info: dict) -> str:
        return f"done in {info['train_seconds']:.0f} s; best val {plan.val_metric} {info['best_val_score']:.4f}"

    # ---- training ------------------------------------------------------------------------------------
    def cpu_bf16(self, plan: Plan) -> bool:
        """Not 3D on CPU: with torch 2.13, bf16 3D convolutions turned the AdrenalMNIST3D loss into NaN
        within two epochs while fp32 trained normally."""
        return plan.spatial_dims != 3

    def setup(self, plan: Plan, dataset: ClassificationData, rank: int, world: int, batch: int,
              info: dict) -> TrainingSetup:
        info["n"] = {s: int(len(y)) for s, y in dataset.labels.items()}
        info["duplicates_across_splits"] = shared = duplicates_across_splits(dataset.images)
        if shared and rank == 0:
            log.warning("identical images in two splits: %s (the official split may carry these; scores on the "
                        "later split are slightly optimistic)", ", ".join(f"{k} share {n}" for k, n in shared.items()))
        train_loader = array_loader(*dataset.split("train"), batch_size=plan.batch_size, shuffle=True, seed=plan.seed,
                                    rank=rank, world=world)
        # every process scores the whole validation set: the checkpoint choice is the same everywhere
        val_loader = array_loader(*dataset.split("val"), batch_size=max(batch, 256), shuffle=False)
        return TrainingSetup(self.module(plan), train_loader, val_loader)

    def module(self, plan: Plan, previous=None) -> ClassificationTask:
        return ClassificationTask(plan.to_dict())

    def save_dataset_split(self, folder: RunFolder, dataset: ClassificationData) -> None:
        if dataset.files:
            folder.write_split_csv((f, dataset.class_names[int(y)], split, g)
                                   for split, files in dataset.files.items()
                                   for f, y, g in zip(files, dataset.labels[split], dataset.groups.get(split, files)))

    # ---- inference -----------------------------------------------------------------------------------------
    def build_network(self, plan: Plan) -> torch.nn.Module:
        return build_network(plan)

    def inferer(self, plan: Plan, net: torch.nn.Module, folder: RunFolder | None, checkpoint: str,
                label: str = "") -> Predictor:
        temperature = folder.temperature(checkpoint) if folder is not None else 1.0
        return Predictor(plan, net, folder.path if folder else None, label or checkpoint, temperature,
                         load_domain(folder, checkpoint) if folder is not None else None)

    def after_training(self, run: Path, plan: Plan, dataset: ClassificationData) -> None:
        """Fit the input-domain statistics of the best checkpoint (RUN/domain.npz)."""
        fit_run_domain(self.load(run, "best"), dataset, "best")

    def output_job(self, model: Predictor, run: Path, out_dir: Path | None, overwrite: bool, options: dict):
        return ClassifyJob(model, run, options.get("checkpoint", "best"), options.get("max_uncertainty"),
                           bool(options.get("allow_out_of_domain")))

    # ---- evaluation -------------------------------------------------------------------------------------------
    def evaluate(self, run: Path, split: str = "test", checkpoint: str = "best", data: str | None = None,
                 **options) -> dict:
        return evaluate_run(self.load(run, checkpoint), run, split, checkpoint, data, **options)

    def report_table(self, run: Path, report: dict) -> Table:
        r = report
        t = Table(f"{run} — {r['split']} ({r['n']} images, {r['checkpoint']} checkpoint)",
                  ["class", "support", "sensitivity", "specificity"])
        for name, v in r["per_class"].items():
            t.rows.append([name, str(v["support"]), f"{v['sensitivity']:.3f}", f"{v['specificity']:.3f}"])
        cal = r["calibration"]
        t.notes.append("   ".join(f"{name.upper() if name != 'brier' else 'Brier'} {r[name]:.4f}{with_ci(r, name)}"
                                   for name in ("auc", "acc", "ece", "brier") if name in r)
                       + "   (95 % bootstrap intervals, stratified by class)")
        t.notes.append(f"ECE {r['ece']:.4f} -> {cal['ece_after']:.4f} after temperature scaling (T={cal['temperature']:.2f}, "
                       f"fitted on val)   -> {RunFolder(run).eval_dir}")
        if "domain" in r:
            t.notes.append(f"input-domain check: {r['domain']['unusual_share']:.1%} of these images called unusual "
                           "(the threshold flags at most about 1 % of validation images)")
        return t

    # ---- export and service ---------------------------------------------------------------------------------------
    def export_graph(self, model: Predictor):
        return graph(model)

    def parity(self, run: Path, model: Predictor, twin: Predictor, inputs: list[Path] | None) -> dict:
        return parity(run, model, twin, inputs)

    def serve(self, job, path: Path, image, dest: Path, options: dict) -> dict:
        pred = job.pred
        x = pred.preprocess(path, image)[None]
        r = pred.predict_file(path, image, options.get("max_uncertainty"), options.get("allow_out_of_domain"), x[0])
        r.pop("file")
        views: dict = {}
        files = {}
        if options.get("explain", True) and not getattr(pred.net, "exported", False):
            cls = r.get("index", int(np.argmax(list(r["probabilities"].values()))))
            heat = saliency(base_network(pred), x.float(), "gradcam", cls)[0]
            views["heat"] = ("heat", heat)
            name = pred.plan.class_names[cls] if pred.plan.class_names else cls
            maps = write_explanation(x[0].numpy(), heat, dest / "gradcam", f"Grad-CAM: {name}")
            files.update({f"heatmap_{k}": v for k, v in maps.items()})
        atomic_write_json(dest / "result.json", r)
        files["json"] = dest / "result.json"
        return {"result": r, "files": files, "views": views}

    def preview(self, plan: Plan, dataset: ClassificationData, samples: int, views: int, rng) -> dict:
        x, _ = dataset.split("train")
        idx = np.sort(rng.choice(len(x), size=min(samples, len(x)), replace=False))
        x = torch.as_tensor(x[idx]).float() / 255.0
        return augmented_rows(plan, x, [(BatchAugment(plan.augment, plan.spatial_dims)(x.clone()), None)
                                        for _ in range(views)])
