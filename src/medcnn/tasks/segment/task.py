"""The segmentation task: what medcnn asks of it (:class:`medcnn.tasks.base.Task`)."""
from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch

from medcnn.data.seg_prepare import prepare_case
from medcnn.data.segmentation import SegmentationData, load_segmentation, looks_like_segmentation, read_case
from medcnn.errors import MedcnnError
from medcnn.infer.segmenter import Segmenter
from medcnn.plan import INFERENCE_FIELDS, Plan
from medcnn.planning.segment import default_plan
from medcnn.runs import RunFolder
from medcnn.tasks.base import Table, Task, TrainingSetup, with_ci
from medcnn.tasks.preview import augmented_rows
from medcnn.tasks.segment.evaluate import evaluate_segment_run
from medcnn.tasks.segment.export import graph, parity
from medcnn.tasks.segment.module import SegmentationTask, build_seg_network
from medcnn.tasks.segment.outputs import SegmentJob
from medcnn.train.patches import PatchBatches
from medcnn.train.seg_data import segment_loaders
from medcnn.transforms.seg_augment import SegAugment

log = logging.getLogger("medcnn.train")


def member_split(plan: Plan, i: int) -> dict:
    """Member i's ``segment.split``: the run's, with the training-subset seed shared by every member;
    in a cross-validation ensemble (``fold: cv``) member i validates on fold i of ``ensemble`` folds."""
    split = {"subset_seed": plan.seed, **plan.segment.split}
    if split.get("fold") == "cv":
        split.update(fold=i, folds=plan.ensemble)
    return split


def ensemble_split(members: list[dict]) -> dict:
    """The case split of an ensemble run from its members' split.json. Members sharing one split give it
    unchanged. Cross-validation members (one validation fold each) give every non-test case as "val",
    with the folds kept under "folds" so that `evaluate` predicts each validation case with the one
    member that did not train on it (out-of-fold)."""
    first = members[0]
    if all(m["val"] == first["val"] for m in members):
        return first
    val = sorted({c for m in members for c in m["val"]})
    out = {"train": sorted({c for m in members for c in m["train"]}), "val": val, "test": first["test"],
           "folds": [m["val"] for m in members]}
    if "groups" in first:
        out["groups"] = first["groups"]
    return out


class Segment(Task):
    name = "segment"
    capabilities = frozenset({"predict", "evaluate", "export", "compare"})
    intended_use = "Outlines the structures below and measures them (volume or area, components, centroids)."
    detect_order = 20

    # ---- data and plan ------------------------------------------------------------------------
    def detect(self, data: str, options: argparse.Namespace) -> bool:
        return looks_like_segmentation(data)

    def load_data(self, data: str, plan: Plan | None = None) -> SegmentationData:
        return load_segmentation(data)

    def default_plan(self, dataset: SegmentationData, source: str, options: argparse.Namespace) -> Plan:
        return default_plan(dataset, source)

    def describe_plan(self, plan: Plan) -> str:
        seg = plan.segment
        return (f"segment with {plan.model.name} {plan.model.kwargs.get('filters')}, patch {seg.patch_size} at "
                f"{seg.target_spacing or 'native'} mm, batch {plan.batch_size}, {plan.epochs} epochs"
                + (f" or what fits {plan.max_minutes:g} min" if plan.max_minutes else "")
                + f", normalisation {plan.preprocessing.normalization}")

    def check_data(self, plan: Plan, dataset: SegmentationData) -> None:
        if plan.num_classes != len(dataset.labels):
            raise MedcnnError(f"the plan is for {plan.num_classes} labels {plan.class_names} but the data has "
                              f"{len(dataset.labels)} {sorted(dataset.labels.values())}")

    def describe_training(self, plan: Plan, dataset: SegmentationData, run_dir: Path) -> str:
        budget = f" (at most; cut to fit {plan.max_minutes:g} min)" if plan.max_minutes else ""
        return (f"training {plan.model.name} segmentation on {dataset.name} ({len(dataset.cases)} labelled cases), "
                f"{plan.epochs} epochs{budget} -> {run_dir}")

    def describe_result(self, plan: Plan, info: dict) -> str:
        return f"done in {info['train_seconds']:.0f} s; best val Dice {info['best_val_score']:.4f}"

    # ---- training ------------------------------------------------------------------------------------
    def setup(self, plan: Plan, dataset: SegmentationData, rank: int, world: int, batch: int,
              info: dict) -> TrainingSetup:
        if plan.segment.tta_flips and not plan.mirror_tta:
            log.warning("segment.tta_flips is not applied: training does not mirror the cases (augment.flip false "
                        "or augment.p 0 or segment.mirror_axes empty), and mirrored views of an unmirrored network "
                        "would be mislabelled")
        train_loader, val_loader, val_cases, split = segment_loaders(plan, dataset, rank, world)
        info["n"] = {k: len(v) for k, v in split.items() if k != "groups"}
        module = self.module(plan)
        module.val_cases = val_cases
        return TrainingSetup(module, train_loader, val_loader, val_cases, split)

    def module(self, plan: Plan, previous=None) -> SegmentationTask:
        module = SegmentationTask(plan.to_dict())
        if previous is not None:
            module.val_cases = previous.val_cases
        return module

    def val_every(self, plan: Plan) -> int:
        return plan.segment.val_every

    def with_steps_per_epoch(self, plan: Plan, steps: int) -> Plan:
        seg = dataclasses.replace(plan.segment, patches_per_epoch=steps * plan.batch_size)
        return dataclasses.replace(plan, segment=seg)

    def member_plan(self, plan: Plan, member: Plan, i: int) -> Plan:
        """Every member trains on the same cases (a train_fraction subset included)."""
        return dataclasses.replace(member, segment=dataclasses.replace(plan.segment, split=member_split(plan, i)))

    def finish_ensemble(self, folder: RunFolder, plan: Plan) -> None:
        """The members' case split is the run's (evaluate reads it)."""
        folder.write_split(ensemble_split([m.split() for m in folder.members(plan.ensemble)]))

    # ---- inference -----------------------------------------------------------------------------------------
    def build_network(self, plan: Plan) -> torch.nn.Module:
        return build_seg_network(plan)

    def inference_plan(self, trained: Plan, run_plan: Plan) -> Plan:
        """Test-time views, window and overlap as the run's plan.yaml says (``plan.INFERENCE_FIELDS``)."""
        seg = dataclasses.replace(trained.segment, **{f: getattr(run_plan.segment, f) for f in INFERENCE_FIELDS})
        return dataclasses.replace(trained, segment=seg).validate()

    def inferer(self, plan: Plan, net: torch.nn.Module, folder: RunFolder | None, checkpoint: str,
                label: str = "") -> Segmenter:
        return Segmenter(plan, net, folder.path if folder else None)

    def output_job(self, model: Segmenter, run: Path, out_dir: Path | None, overwrite: bool, options: dict):
        return SegmentJob(model, run, out_dir, options.get("checkpoint", "best"))

    # ---- evaluation -------------------------------------------------------------------------------------------
    evaluate_options = ("cases",)

    def evaluate(self, run: Path, split: str = "test", checkpoint: str = "best", data: str | None = None,
                 **options) -> dict:
        if data is not None:
            raise MedcnnError("--data is for classification runs; a segmentation run evaluates its own split")
        return evaluate_segment_run(self.load(run, checkpoint), run, split, checkpoint, **options)

    def report_table(self, run: Path, report: dict) -> Table:
        r = report
        how = f"{r['ensemble']} cross-validation members, each case out-of-fold" if r.get("out_of_fold") else \
            f"{r['checkpoint']} checkpoint" + (f" of {r['ensemble']} members" if r.get("ensemble", 1) > 1 else "")
        t = Table(f"{run} — {r['split']} ({r['n']} cases, {how}, post-processing {r['postprocess']['postprocess']})",
                  ["label", "Dice [95 % CI]", "NSD (τ mm)", "IoU", "HD95 mm", "ASSD mm", f"ref {r['size_unit']}",
                   f"pred {r['size_unit']}", "size r"])
        for name, v in r["per_label"].items():
            nsd = f"{v['nsd']:.4f} ({v['nsd_tolerance_mm']:g})" if "nsd" in v else "–"
            t.rows.append([name, f"{v['dice']:.4f}{with_ci(v, 'dice')}", nsd, f"{v['iou']:.4f}", f"{v['hd95_mm']:.2f}",
                           f"{v['assd_mm']:.2f}", f"{v['ref_size_mean']:.0f}", f"{v['pred_size_mean']:.0f}",
                           f"{v['size_correlation']:.3f}"])
        line = f"mean Dice {r['dice_mean']:.4f}{with_ci(r, 'dice_mean')}   inference {r['infer_s_per_case']:.2f} s/case"
        if "fov" in r:
            f = r["fov"]
            line += (f"   inside the field of view: AUC {f['auc']:.4f}  AUPR {f.get('aupr', float('nan')):.4f}  "
                     f"F1 {f['f1']:.4f}  ACC {f['acc']:.4f}  "
                     f"sens {f['sensitivity']:.4f}  spec {f['specificity']:.4f}")
        t.notes.append(line + f"   -> {RunFolder(run).eval_dir}")
        return t

    # ---- export and service ---------------------------------------------------------------------------------------
    def export_graph(self, model: Segmenter):
        return graph(model)

    def parity(self, run: Path, model: Segmenter, twin: Segmenter, inputs: list[Path] | None) -> dict:
        return parity(run, model, twin, inputs)

    def card(self, plan: Plan) -> dict:
        return {"intended_use": self.intended_use, "classes": list(plan.class_names)[1:]}  # background is no structure

    def serve(self, job, path: Path, image, dest: Path, options: dict) -> dict:
        import json

        label = job.seg.segment(image).label
        row = job.save(path, image, label, dest)
        report = json.loads(Path(row["outputs"]["measurements"]).read_text())
        files = {k: Path(v) for k, v in row["outputs"].items()}
        files["measurements_csv"] = dest / "measurements.csv"
        shown = options.get("components_shown", 5)
        labels = [{**m, "components": m["components"][:shown]} for m in report["labels"]]
        return {"result": {"unit": report["unit"], "labels": labels}, "files": files,
                "views": {"mask": ("mask", label, list(job.seg.plan.class_names))}}

    def preview(self, plan: Plan, dataset: SegmentationData, samples: int, views: int, rng) -> dict:
        n = len(dataset.cases)
        cases = [dataset.cases[i] for i in np.sort(rng.choice(n, size=min(samples, n), replace=False))]
        prepared = [prepare_case(c.id, *read_case(c, dataset.labels), plan) for c in cases]
        patches = PatchBatches(prepared, plan.segment.patch_size, batch_size=len(prepared), n_batches=1,
                               fg_oversample=1.0, seed=int(rng.integers(1 << 30)))
        x, y, _ = next(iter(patches))
        augmented = []
        for _ in range(views):
            xa, ya, _ = SegAugment(plan.augment, plan.spatial_dims, plan.mirror_axes)(x.clone(), y.clone())
            augmented.append((xa, ya))
        return augmented_rows(plan, x, augmented, y)
