"""The classification task: network, loss, probabilities and validation metrics, as one
small LightningModule. The trainer (``medcnn.train``) supplies devices, precision,
checkpoints and logging.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from medcnn.infer.predictor import probabilities, to_float
from medcnn.metrics.classification import accuracy, auc_score
from medcnn.models import network_from_plan
from medcnn.plan import Plan
from medcnn.tasks.base import TaskModule
from medcnn.transforms.augment import BatchAugment
from medcnn.transforms.mix import mix_batch


def build_network(plan: Plan) -> torch.nn.Module:
    """The classifier of a plan; its input normalisation (mean / std) is part of the network."""
    return network_from_plan(plan, plan.num_classes, mean=plan.preprocessing.mean, std=plan.preprocessing.std)


class ClassificationTask(TaskModule):
    def __init__(self, plan: dict):
        super().__init__()
        self.save_hyperparameters({"plan": plan})
        self.plan = Plan.from_dict(plan)
        self.net = build_network(self.plan)
        self.augment = BatchAugment(self.plan.augment, self.plan.spatial_dims)
        self.channels_last = self.plan.spatial_dims == 2
        self._val_probs: list[torch.Tensor] = []
        self._val_labels: list[torch.Tensor] = []
        self.epoch_summary: dict[str, float] = {}  # read by the EpochMetrics callback

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # contiguous input matters: torch 2.13's CPU bf16 conv3d returned NaN on kornia's strided output
        x = x.contiguous(memory_format=torch.channels_last) if self.channels_last else x.contiguous()
        return self.net(x)

    def on_fit_start(self) -> None:
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``y``: class indices (B,), or for MixUp/CutMix soft targets (B, K); multi-hot for multilabel."""
        logits = logits.float()
        if self.plan.label_type == "multilabel":
            target = y.float()
            if self.plan.label_smoothing:
                target = target * (1 - self.plan.label_smoothing) + 0.5 * self.plan.label_smoothing
            return F.binary_cross_entropy_with_logits(logits, target)
        weight = torch.tensor(self.plan.class_weights, device=logits.device) if self.plan.class_weights else None
        target = y.float() if y.ndim == 2 else y.long()
        return F.cross_entropy(logits, target, weight=weight, label_smoothing=self.plan.label_smoothing)

    def step_loss(self, batch) -> torch.Tensor:
        x, y = batch
        aug = self.plan.augment
        with torch.no_grad():
            x = self.augment(to_float(x))
            if aug.mixup > 0 or aug.cutmix > 0:
                x, perm, lam = mix_batch(x, aug.mixup, aug.cutmix)
                y = y.float() if self.plan.label_type == "multilabel" else F.one_hot(y.long(), self.plan.num_classes).float()
                w = lam.view(-1, 1)
                y = w * y + (1 - w) * y[perm]
        return self.loss(self(x), y)

    def on_validation_epoch_start(self) -> None:
        self._val_loss_sum, self._val_n = 0.0, 0

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(to_float(x))
        loss = self.loss(logits, y)
        self.log("val/loss", loss, on_step=False, on_epoch=True, batch_size=len(x))
        self._val_loss_sum += float(loss) * len(x)
        self._val_n += len(x)
        self._val_probs.append(probabilities(logits, self.plan.label_type).cpu())
        self._val_labels.append(y.cpu())

    def on_validation_epoch_end(self) -> None:
        if not self._val_probs:
            return
        probs = torch.cat(self._val_probs).numpy()
        labels = torch.cat(self._val_labels).numpy()
        self._val_probs.clear()
        self._val_labels.clear()
        auc = auc_score(probs, labels, self.plan.label_type)
        acc = accuracy(probs, labels, self.plan.label_type)
        self.log("val/auc", auc if math.isfinite(auc) else float("nan"), prog_bar=True)
        self.log("val/acc", acc, prog_bar=True)
        metric = self.plan.val_metric
        score = {"auc": auc, "acc": acc}.get(metric, acc)
        self.log("val/score", score if math.isfinite(score) else acc)
        self.epoch_summary = {
            "train_loss": self.mean_train_loss,
            "val_loss": self._val_loss_sum / max(self._val_n, 1), "val_auc": auc, "val_acc": acc,
        }
