"""A task from outside medcnn, registered the way a plugin registers one (docs/architecture.md,
"How to add a task"): regress the mean brightness of a 2D image (0-1) from its pixels.

It brings its own network (``register_model``), its own plan settings (``plan.options``, checked by
its ``TaskSchema``), data loading, planning, a LightningModule, an inferer, the ``medcnn predict``
writer and ``medcnn evaluate``; medcnn's CLI, engine and run folder do the rest.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medcnn.data.classification import ClassificationData, load_classification
from medcnn.errors import ConfigError
from medcnn.models import network_from_plan, register_model
from medcnn.plan import ModelConfig, OptimConfig, Plan, Preprocessing, TaskSchema
from medcnn.runs import RunFolder
from medcnn.tasks import Table, Task, TaskModule, TrainingSetup, register_task
from medcnn.train.loaders import array_loader
from medcnn.utils.files import atomic_write_json

PLUGIN = str(Path(__file__).resolve())


@register_model("tiny-regressor")
def tiny_regressor(spatial_dims: int, in_channels: int, num_classes: int, width: int = 8) -> nn.Module:
    return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(width, num_classes))


def _targets(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1).mean(1).astype(np.float32) / 255.0


class BrightnessModule(TaskModule):
    def __init__(self, plan: dict):
        super().__init__()
        self.save_hyperparameters({"plan": plan})
        self.plan = Plan.from_dict(plan)
        self.net = network_from_plan(self.plan, 1)
        self.epoch_summary: dict[str, float] = {}

    def step_loss(self, batch) -> torch.Tensor:
        x, y = batch
        return F.mse_loss(self.net(x.float() / 255).squeeze(1), y)

    def on_validation_epoch_start(self) -> None:
        self._err = []

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self._err.append((self.net(x.float() / 255).squeeze(1) - y).abs())

    def on_validation_epoch_end(self) -> None:
        mae = float(torch.cat(self._err).mean())
        self.log("val/score", -mae)
        self.epoch_summary = {"train_loss": self.mean_train_loss, "val_loss": mae}


class BrightnessModel:
    """The inferer: an image file in, its predicted brightness out."""

    def __init__(self, plan: Plan, net: nn.Module):
        self.plan, self.net = plan, net.eval()

    def predict_array(self, images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.net(torch.as_tensor(images).float() / 255).squeeze(1).numpy()

    def predict_file(self, path: Path) -> float:
        from medcnn.data.preprocess import image_to_tensor
        from medcnn.io import read_image

        pre = self.plan.preprocessing
        x = image_to_tensor(read_image(path), pre.input_size, pre.channels, pre.normalization, path=str(path))
        with torch.no_grad():
            return float(self.net(x[None].float()).squeeze())


class BrightnessJob:
    fields = ["brightness"]
    out_dir = None
    keep_phi = False

    def __init__(self, model: BrightnessModel, run: Path):
        self.model, self.run = model, run

    def one(self, path: Path, dest=None) -> dict:
        return {"file": str(path), "brightness": round(self.model.predict_file(path), 6)}

    def row(self, r: dict) -> dict:
        return {k: r.get(k) for k in ("file", "brightness", "error")}

    def table(self, results: list[dict]) -> Table:
        return Table(f"{self.run}: brightness", ["file", "brightness"],
                     [[Path(r["file"]).name, f"{r['brightness']:.3f}"] for r in results if "error" not in r])


class Brightness(Task):
    name = "brightness"
    capabilities = frozenset({"predict", "evaluate"})
    intended_use = "The mean brightness of a 2D image, as a test of plugin tasks."

    def load_data(self, data: str, plan: Plan | None = None) -> ClassificationData:
        return load_classification(data)

    def default_plan(self, dataset: ClassificationData, source: str, options: argparse.Namespace) -> Plan:
        size = list(dataset.images["train"].shape[2:])
        return Plan(task=self.name, data=source, num_classes=1, spatial_dims=2, plugins=[PLUGIN],
                    preprocessing=Preprocessing(input_size=size, channels=dataset.channels, normalization="uint8"),
                    model=ModelConfig("tiny-regressor", {"width": 8}), optim=OptimConfig(lr=1e-2, scheduler="none"),
                    batch_size=64, epochs=2, val_metric="mae", options={"target": "mean"}).validate()

    def setup(self, plan: Plan, dataset: ClassificationData, rank: int, world: int, batch: int,
              info: dict) -> TrainingSetup:
        info["n"] = {s: int(len(x)) for s, x in dataset.images.items()}
        x, v = dataset.images["train"], dataset.images["val"]
        train = array_loader(x, _targets(x), plan.batch_size, shuffle=True, seed=plan.seed, rank=rank, world=world)
        val = array_loader(v, _targets(v), 256, shuffle=False)
        return TrainingSetup(self.module(plan), train, val)

    def module(self, plan: Plan, previous=None) -> BrightnessModule:
        return BrightnessModule(plan.to_dict())

    def describe_result(self, plan: Plan, info: dict) -> str:
        return f"done in {info['train_seconds']:.0f} s; best val MAE {-info['best_val_score']:.4f}"

    def build_network(self, plan: Plan) -> nn.Module:
        return network_from_plan(plan, 1)

    def inferer(self, plan: Plan, net: nn.Module, folder, checkpoint: str, label: str = "") -> BrightnessModel:
        return BrightnessModel(plan, net)

    def output_job(self, model: BrightnessModel, run: Path, out_dir, overwrite: bool, options: dict) -> BrightnessJob:
        return BrightnessJob(model, run)

    def evaluate(self, run: Path, split: str = "test", checkpoint: str = "best", data: str | None = None,
                 **options) -> dict:
        model = self.load(run, checkpoint)
        images = load_classification(data or model.plan.data).images[split]
        mae = float(np.abs(model.predict_array(images) - _targets(images)).mean())
        report = {"split": split, "n": int(len(images)), "mae": mae}
        atomic_write_json(RunFolder(run).eval_dir / f"{split}_brightness.json", report)
        return report

    def report_table(self, run: Path, report: dict) -> Table:
        return Table(f"{run} — {report['split']}", ["images", "MAE"], [[str(report["n"]), f"{report['mae']:.4f}"]])


def _check(plan: Plan) -> None:
    if plan.options.get("target") != "mean":
        raise ConfigError(f"options.target must be mean, got {plan.options.get('target')!r}")


register_task(Brightness(), TaskSchema(check=_check))
