"""The enhancement task: a U-Net that restores degraded images (denoising, artifact reduction,
super-resolution), trained on (degraded, clean) patches; validated by PSNR on whole slices with
fixed degradations. The trainer (``medcnn.train``) supplies devices, precision, checkpoints, logs.

With ``enhance.residual`` the network predicts the correction added to its input (DnCNN's
residual learning), so an untrained network starts as the identity.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from medcnn.models import create_model, load_plugins
from medcnn.plan import Plan
from medcnn.tasks.base import TaskModule


def build_enhance_network(plan: Plan) -> torch.nn.Module:
    load_plugins(plan.plugins)
    c = plan.preprocessing.channels
    return create_model(plan.model.name, plan.spatial_dims, c, c, **plan.model.kwargs)


def psnr(restored: torch.Tensor, clean: torch.Tensor, data_range: float = 1.0) -> float:
    """PSNR in dB over the whole image (normalised units: ``data_range`` is the window's width)."""
    mse = float(F.mse_loss(restored.float(), clean.float()))
    return float("inf") if mse == 0 else 10 * math.log10(data_range ** 2 / mse)


def stride_of(plan: Plan) -> int:
    strides = plan.model.kwargs.get("strides", [1])
    return int(np.prod(strides))


class EnhanceTask(TaskModule):
    def __init__(self, plan: dict):
        super().__init__()
        self.save_hyperparameters({"plan": plan})
        self.plan = Plan.from_dict(plan)
        self.net = build_enhance_network(self.plan)
        self.val_pairs: list = []  # (degraded, clean, level), set by the engine (not saved in checkpoints)
        self._psnr: list[tuple[float, float]] = []
        self.epoch_summary: dict[str, float] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x.contiguous())
        return x + out if self.plan.enhance.residual else out

    def step_loss(self, batch) -> torch.Tensor:
        degraded, clean = batch
        out = self(degraded).float()
        if self.plan.enhance.loss == "mse":
            return F.mse_loss(out, clean.float())
        return F.l1_loss(out, clean.float())

    def restore(self, image: torch.Tensor) -> torch.Tensor:
        """(C, H, W) normalised slice of any size -> restored slice (padded to the network's stride)."""
        s = stride_of(self.plan)
        h, w = image.shape[-2:]
        ph, pw = (-h) % s, (-w) % s
        x = image[None]
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if ph < h and pw < w else "replicate")
        return self(x)[0, :, :h, :w]

    def validation_step(self, index, batch_idx):
        degraded, clean, _ = self.val_pairs[int(index)]
        out = self.restore(degraded.to(self.device)).float().cpu()
        self._psnr.append((psnr(out, clean), psnr(degraded, clean)))

    def on_validation_epoch_end(self) -> None:
        if not self._psnr:
            return
        p = np.array(self._psnr, dtype=np.float64)
        self._psnr.clear()
        score, before = float(np.mean(p[:, 0])), float(np.mean(p[:, 1]))
        self.log("val/psnr", score, prog_bar=True)
        self.log("val/score", score)
        self.epoch_summary = {"train_loss": self.mean_train_loss, "val_psnr": score, "val_psnr_degraded": before}

    def configure_optimizers(self):
        from medcnn.train.optim import make_optimizer

        return make_optimizer(self.net.parameters(), self.plan, int(self.trainer.estimated_stepping_batches))
