"""Self-supervised pretraining (``medcnn pretrain``): contrastive, of a classification backbone on
pooled unlabelled 2D images; or restoration (in-/out-painting) of the U-Net a segmentation plan
trains. A pretraining run predicts nothing: it is a ``--pretrained`` source for the other tasks."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from medcnn.data.classification import load_classification
from medcnn.data.segmentation import load_segmentation, looks_like_segmentation
from medcnn.errors import MedcnnError
from medcnn.plan import Plan
from medcnn.planning.pretrain import pretrain_plan, restoration_plan
from medcnn.tasks.base import Task, TrainingSetup
from medcnn.tasks.pretrain.contrastive import ContrastiveTask, pooled_images
from medcnn.tasks.pretrain.restoration import RestorationTask
from medcnn.train.loaders import array_loader
from medcnn.train.seg_data import restoration_loaders


class Pretrain(Task):
    name = "pretrain"
    capabilities = frozenset()
    intended_use = "Pretrained weights for medcnn train --pretrained."
    detect_order = 1000  # never chosen by --task auto

    def check_options(self, options: argparse.Namespace) -> None:
        raise MedcnnError("pretraining has its own command: medcnn pretrain DATA... --out RUN")

    def refusal(self, command: str) -> str:
        return "a pretraining run predicts nothing; start a task from it: medcnn train DATA --pretrained RUN"

    def load_data(self, data: str, plan: Plan | None = None):
        """The dataset a pretraining plan trains on (``medcnn train --resume``)."""
        if plan is None:
            raise MedcnnError("pretraining has its own command: medcnn pretrain DATA... --out RUN")
        if plan.restores:
            return load_segmentation(data)
        pre = plan.preprocessing
        return load_classification(data, input_size=pre.input_size, channels=pre.channels, normalization=pre.normalization,
                                   seed=plan.seed)

    def prepare(self, sources: list[str], size: int, max_per_source: int = 0, channels: int | None = None):
        """(dataset, plan, what it is) of ``medcnn pretrain SOURCES``: one segmentation dataset ->
        restoration of its planned U-Net; else contrastive on the pooled images of the sources."""
        if len(sources) == 1 and looks_like_segmentation(sources[0]):
            ds = load_segmentation(sources[0])
            plan = restoration_plan(ds, sources[0])
            return ds, plan, (f"restoration pretraining of the segmentation U-Net on the training cases and "
                              f"{len(ds.unlabelled)} unlabelled images of {ds.name} (patch {plan.segment.patch_size})")
        ds, counts = pooled_images(list(sources), size, max_per_source, channels=channels)
        return ds, pretrain_plan(ds, size), (f"pretraining on {sum(len(v) for v in ds.images.values())} "
                                             f"{'colour' if ds.channels == 3 else 'grey'} images: "
                                             + ", ".join(f"{k} {n}" for k, n in counts.items()))

    def describe_result(self, plan: Plan, info: dict) -> str:
        return f"done in {info['train_seconds']:.0f} s; best val loss {-info['best_val_score']:.4f}"

    def describe_training(self, plan: Plan, dataset, run_dir: Path) -> str:
        return f"pretraining ({plan.pretext}) {plan.model.name} on {dataset.name}, {plan.epochs} epochs -> {run_dir}"

    def setup(self, plan: Plan, dataset, rank: int, world: int, batch: int, info: dict) -> TrainingSetup:
        if plan.restores:
            train_loader, val_loader, split = restoration_loaders(plan, dataset, rank, world)
            info["n"] = {"train": len(split["train"]), "unlabelled": len(split["unlabelled"]),
                         "val": len(val_loader.dataset)}
            return TrainingSetup(self.module(plan), train_loader, val_loader, [], split)

        info["n"] = {s: int(len(y)) for s, y in dataset.labels.items()}
        train_loader = array_loader(*dataset.split("train"), batch_size=plan.batch_size, shuffle=True, seed=plan.seed,
                                    rank=rank, world=world)
        val_loader = array_loader(*dataset.split("val"), batch_size=max(batch, 256), shuffle=False)
        return TrainingSetup(self.module(plan), train_loader, val_loader)

    def module(self, plan: Plan, previous=None):
        return RestorationTask(plan.to_dict()) if plan.restores else ContrastiveTask(plan.to_dict())

    def with_steps_per_epoch(self, plan: Plan, steps: int) -> Plan:
        """Restoration samples patches as its segmentation plan does."""
        if not plan.restores:
            return plan
        seg = dataclasses.replace(plan.segment, patches_per_epoch=steps * plan.batch_size)
        return dataclasses.replace(plan, segment=seg)
