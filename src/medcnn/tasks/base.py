"""The task contract.

A task (classify, segment, enhance, pretrain, or one a plugin registers) is one :class:`Task`
object in :mod:`medcnn.tasks.registry`. It answers every question the rest of medcnn asks of a
task -- how to load and plan a dataset, build and train the network, predict, evaluate, write
outputs, export and serve -- so that the CLI, the engine, export and the service never branch on a
task's name. Its training step is a :class:`TaskModule` (a LightningModule).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch

from medcnn.errors import MedcnnError
from medcnn.infer.loading import load_network
from medcnn.infer.onnx_net import onnx_model
from medcnn.plan import Plan
from medcnn.runs import RunFolder
from medcnn.train.optim import make_optimizer
from medcnn.transfer.finetune import param_groups


def with_ci(report: dict, name: str, fmt: str = ".3f") -> str:
    """`` [lo, hi]`` for ``report[name + "_ci95"]``, or "" when the report has none."""
    ci = report.get(f"{name}_ci95")
    return f" [{ci[0]:{fmt}}, {ci[1]:{fmt}}]" if ci else ""


@dataclass
class Table:
    """A report as rows of text (the CLI draws it; other front ends may too)."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # lines printed after the table


class OutputJob:
    """What a task's ``medcnn predict`` writer shares (see :meth:`Task.output_job`)."""

    keep_phi = False  # DICOM outputs keep the source's patient identity (medcnn.io.phi)
    rtstruct = False  # a segmentation of a DICOM series also gets an RTSTRUCT (medcnn.io.dicom_rtstruct) ...
    can_rtstruct = False  # ... where the task's outputs are label maps

    def inputs(self, paths: list[Path]) -> list[Path]:
        """The inputs to predict, one per result, from the expanded paths (default: each path)."""
        return list(paths)


@dataclass
class TrainingSetup:
    """What training a plan on a dataset needs: the LightningModule, its loaders, and the whole
    validation cases a sliding-window task validates on (the time budget probes them)."""

    module: Any
    train_loader: Any
    val_loader: Any
    val_cases: list = field(default_factory=list)
    split: dict | None = None  # the case split to write as split.json (None: the dataset has its own)


class Task:
    """One task. Subclasses set ``name`` and override what applies; the defaults say what a task
    without that capability does. ``capabilities`` names the commands it supports beyond training
    (predict, evaluate, export, explain, compare)."""

    name: str = ""
    capabilities: frozenset[str] = frozenset({"predict", "evaluate", "export"})
    intended_use: str = ""  # one sentence for the model card
    # the `medcnn plan/train --task auto` order: lower first; the first whose detect() is true wins
    detect_order: int = 50

    def refusal(self, command: str) -> str:
        """Why ``command`` (a capability this task lacks) is refused for its runs."""
        return f"{command} is not available for {self.name} runs"

    # ---- data and plan ---------------------------------------------------------------------
    def detect(self, data: str, options: argparse.Namespace) -> bool:
        """Whether ``--task auto`` should pick this task for ``data`` (and the task options given)."""
        return False

    def check_options(self, options: argparse.Namespace) -> None:
        """Refuse task options (e.g. ``--degradation``) this task does not take."""
        for name in ("degradation", "level"):
            if getattr(options, name, None) is not None:
                raise MedcnnError(f"--{name} is for --task enhance, not {self.name}")

    def load_data(self, data: str, plan: Plan | None = None):
        """The dataset at ``data`` (as ``plan`` reads it, when given)."""
        raise NotImplementedError

    def default_plan(self, dataset, source: str, options: argparse.Namespace) -> Plan:
        """The plan the fingerprint of ``dataset`` suggests (``medcnn plan``)."""
        raise NotImplementedError

    def describe_plan(self, plan: Plan) -> str:
        """One line summarising a plan (after ``medcnn plan`` wrote it)."""
        return f"{plan.task} with {plan.model.name}, batch {plan.batch_size}, {plan.epochs} epochs"

    def check_data(self, plan: Plan, dataset) -> None:
        """Refuse a dataset the plan cannot train on (classes, channels, sizes)."""

    def describe_training(self, plan: Plan, dataset, run_dir: Path) -> str:
        return f"training {plan.model.name} ({plan.task}) on {dataset.name}, {plan.epochs} epochs -> {run_dir}"

    def describe_result(self, plan: Plan, info: dict) -> str:
        best = info.get("best_val_score")
        return f"done in {info['train_seconds']:.0f} s; best val score {best}"

    # ---- training ------------------------------------------------------------------------------
    def cpu_bf16(self, plan: Plan) -> bool:
        """Whether ``precision: auto`` may train this plan in bf16 on a CPU with AVX-512 bf16."""
        return True

    def setup(self, plan: Plan, dataset, rank: int, world: int, batch: int, info: dict) -> TrainingSetup:
        """The module and loaders of this process (its ``batch`` share of every training batch of
        ``world`` processes); records the data sizes in ``info["n"]``."""
        raise NotImplementedError

    def module(self, plan: Plan, previous: TaskModule | None = None) -> TaskModule:
        """A fresh module for ``plan`` (after the time budget changed it), keeping what the engine
        attached to ``previous`` (validation data)."""
        raise NotImplementedError

    def val_every(self, plan: Plan) -> int:
        return 1

    def with_steps_per_epoch(self, plan: Plan, steps: int) -> Plan:
        """The plan with epochs of ``steps`` batches, for tasks whose epochs are sampled patches;
        other tasks' epochs are their datasets, and the plan stays."""
        return plan

    def member_plan(self, plan: Plan, member: Plan, i: int) -> Plan:
        """Member i's plan in an ensemble of ``plan``: ``member`` is the engine's (its own seed and
        budget, ``ensemble: 1``)."""
        return member

    def save_dataset_split(self, folder: RunFolder, dataset) -> None:
        """Write the dataset's own split into a new run folder (split.csv of a folder dataset)."""

    def after_training(self, run: Path, plan: Plan, dataset) -> None:
        """Once a run has trained (single or ensemble, on the process that writes the run): what its
        folder needs from the training data, e.g. a classifier's input-domain statistics."""

    def finish_ensemble(self, folder: RunFolder, plan: Plan) -> None:
        """After every member trained: what the ensemble's folder needs (e.g. the members' split)."""

    # ---- inference -----------------------------------------------------------------------------------
    def out_channels(self, plan: Plan) -> int:
        """The network's outputs: one per class (an enhancement network: one per image channel)."""
        return plan.num_classes

    def build_network(self, plan: Plan) -> torch.nn.Module:
        raise NotImplementedError

    def inference_plan(self, trained: Plan, run_plan: Plan) -> Plan:
        """The plan a run predicts with, from the one its checkpoint was trained with and the
        run's plan.yaml (settings that change only how a trained network predicts)."""
        return trained

    def inferer(self, plan: Plan, net: torch.nn.Module, folder: RunFolder | None, checkpoint: str, label: str = ""):
        """The object that predicts with ``net`` (predict, serve, evaluate, export call it);
        ``label`` says which checkpoint(s) it holds."""
        raise NotImplementedError

    def load(self, run: str | Path, checkpoint: str = "best", engine: str = "torch"):
        """The inferer of a run folder: ``checkpoint`` best | last | a .ckpt path (every member's for an
        ensemble); ``engine="onnx"``: the run's export (``medcnn export``) in ONNX Runtime."""
        if engine == "onnx":
            plan, net = onnx_model(run, checkpoint)
            return self.inferer(plan, net, RunFolder(run), checkpoint, f"{checkpoint} (onnx)")
        folder, plan, net, label = load_network(run, checkpoint, self.build_network, self.inference_plan)
        return self.inferer(plan, net, folder, checkpoint, label)

    def output_job(self, model, run: Path, out_dir: Path | None, overwrite: bool, options: dict):
        """The writer of ``medcnn predict``: ``fields`` (CSV columns), ``one(path, dest)``, ``row(result)``,
        ``table(results)``, ``out_dir`` (None when nothing is written to files), optionally ``inputs(paths)``
        (:class:`OutputJob`'s default: each path is one input)."""
        raise NotImplementedError

    # ---- evaluation --------------------------------------------------------------------------------------
    evaluate_options: tuple[str, ...] = ()
    """The options of this task's ``evaluate`` that the command line offers to every task's runs
    (e.g. ``cases``): a run of a task without one refuses it in one line."""

    def evaluate(self, run: Path, split: str = "test", checkpoint: str = "best", data: str | None = None,
                 **options) -> dict:
        """``medcnn evaluate``: metrics of ``split`` (``data``: another dataset, where the task allows),
        reports and figures in RUN/eval/; ``options``: the task's own (e.g. how many figures)."""
        raise NotImplementedError

    def report_table(self, run: Path, report: dict) -> Table:
        raise NotImplementedError

    # ---- export and service -------------------------------------------------------------------------------
    def export_graph(self, model):
        """(module, example input, dynamic shapes, input names, output names, record) of the ONNX graph."""
        raise NotImplementedError

    def parity(self, run: Path, model, twin, inputs: list[Path] | None) -> dict:
        """Max |ONNX - PyTorch| of ``twin`` against ``model`` on real inputs."""
        raise NotImplementedError

    def card(self, plan: Plan) -> dict:
        """The task's part of a model card: what it outputs."""
        return {"intended_use": self.intended_use, "classes": list(plan.class_names)}

    def serve(self, job, path: Path, image, dest: Path, options: dict) -> dict:
        """One request: {"result": ..., "files": {name: Path}, "views": {name: what to draw}} where a
        view is ("image", Image) | ("mask", Image label map) | ("heat", array)."""
        raise NotImplementedError

    def preview(self, plan: Plan, dataset, samples: int, views: int, rng) -> dict:
        """What ``medcnn augment --preview`` draws: {"rows": [[original, view, ...]], "masks": ...,
        "titles": [...], "what": caption}."""
        raise NotImplementedError


class TaskModule(L.LightningModule):
    transferred: set[str] = set()  # network tensors filled from pretrained weights (medcnn.transfer)

    def optimizer_params(self) -> list[dict]:
        """The network's parameters as optimizer groups (pretrained ones at their own learning rate)."""
        return param_groups(self.net, self.plan, self.transferred)

    def extra_parameters(self) -> list[dict]:
        """Optimizer groups beyond the network's (e.g. a projection head that is not saved as ``net``)."""
        return []

    def configure_optimizers(self):
        return make_optimizer([*self.optimizer_params(), *self.extra_parameters()], self.plan,
                              int(self.trainer.estimated_stepping_batches))

    def step_loss(self, batch) -> torch.Tensor:
        """The training loss of one batch (augmentation included); ``training_step`` and the
        time-budget calibration (``medcnn.train.budget``) both call it."""
        raise NotImplementedError

    def training_step(self, batch, batch_idx):
        return self.record_train_loss(self.step_loss(batch), batch_idx, len(batch[0]))

    def on_train_epoch_start(self) -> None:
        self._loss_sum, self._loss_n = 0.0, 0
        loader = getattr(self.trainer, "train_dataloader", None)
        # the epoch's data order is a function of (seed, epoch): Lightning's own sampler-epoch counter
        # lags by one after a resume from an end-of-epoch checkpoint, so the task sets it
        for source in (getattr(loader, "dataset", None), getattr(loader, "batch_sampler", None)):
            if hasattr(source, "set_epoch"):
                source.set_epoch(self.current_epoch)

    def record_train_loss(self, loss: torch.Tensor, batch_idx: int, n: int) -> torch.Tensor:
        """Refuse a non-finite loss (one clear error), log it, and keep the epoch's running mean."""
        if not torch.isfinite(loss):
            raise MedcnnError(f"training diverged: the loss is {float(loss)} at epoch {self.current_epoch + 1}, "
                              f"step {batch_idx}; try a lower optim.lr or precision=32")
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=n)
        self._loss_sum = getattr(self, "_loss_sum", 0.0) + float(loss.detach()) * n
        self._loss_n = getattr(self, "_loss_n", 0) + n
        return loss

    @property
    def mean_train_loss(self) -> float:
        """The epoch's mean training loss over all samples (of all processes in a data-parallel run)."""
        total, n = getattr(self, "_loss_sum", 0.0), getattr(self, "_loss_n", 0)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            t = torch.tensor([total, float(n)], dtype=torch.float64, device=self.device)
            torch.distributed.all_reduce(t)
            total, n = float(t[0]), int(t[1])
        return total / n if n else float("nan")
