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

from medcnn.infer.enhancer import pad_to_stride, stride_of
from medcnn.models import network_from_plan
from medcnn.plan import Plan
from medcnn.tasks.base import TaskModule


def build_enhance_network(plan: Plan) -> torch.nn.Module:
    """As many outputs as input channels: the restored image (or its correction, ``enhance.residual``)."""
    return network_from_plan(plan, plan.preprocessing.channels)


def psnr(restored: torch.Tensor, clean: torch.Tensor, data_range: float = 1.0) -> float:
    """PSNR in dB over the whole image (normalised units: ``data_range`` is the window's width)."""
    mse = float(F.mse_loss(restored.float(), clean.float()))
    return float("inf") if mse == 0 else 10 * math.log10(data_range ** 2 / mse)


def blind_spot(x: torch.Tensor, fraction: float, radius: int = 2,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise2Void masking: a random ``fraction`` of the pixels of (B, C, H, W) ``x`` take the value
    of a random other pixel within ``radius``; returns the masked input and the (B, C, H, W) mask.
    A network that predicts the masked pixels from their surroundings cannot copy their noise."""
    b, c, h, w = x.shape
    dev = generator.device if generator is not None else x.device  # a seeded CPU generator draws on the CPU
    mask = (torch.rand(b, 1, h, w, generator=generator, device=dev) < fraction).to(x.device)
    dy = torch.randint(-radius, radius + 1, (b, 1, h, w), generator=generator, device=dev).to(x.device)
    dx = torch.randint(-radius, radius + 1, (b, 1, h, w), generator=generator, device=dev).to(x.device)
    dx = torch.where((dy == 0) & (dx == 0), torch.ones_like(dx), dx)  # never the pixel itself
    yy = (torch.arange(h, device=x.device).view(1, 1, h, 1) + dy).abs()
    yy = torch.where(yy > h - 1, 2 * (h - 1) - yy, yy)  # reflect at the borders
    xx = (torch.arange(w, device=x.device).view(1, 1, 1, w) + dx).abs()
    xx = torch.where(xx > w - 1, 2 * (w - 1) - xx, xx)
    flat = (yy * w + xx).reshape(b, 1, h * w).expand(b, c, h * w)
    neighbour = x.reshape(b, c, h * w).gather(2, flat).reshape(b, c, h, w)
    mask = mask.expand(b, c, h, w)
    return torch.where(mask, neighbour, x), mask


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
        out = self.net(x.contiguous(memory_format=torch.channels_last))
        return x + out if self.plan.enhance.residual else out

    def on_fit_start(self) -> None:
        # channels-last weights and inputs: a training step of the default U-Net (no normalisation
        # layers) takes 22 % less time on the CPU in bf16 (EXPERIMENTS_enhance.md, session 41)
        self.net.to(memory_format=torch.channels_last)

    def step_loss(self, batch) -> torch.Tensor:
        degraded, clean = batch
        if self.plan.enhance.mode == "noise2void":  # the clean patches are never looked at
            return self.blind_spot_loss(degraded)
        out = self(degraded).float()
        if self.plan.enhance.loss == "mse":
            return F.mse_loss(out, clean.float())
        return F.l1_loss(out, clean.float())

    def blind_spot_loss(self, noisy: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        masked, mask = blind_spot(noisy, self.plan.enhance.blind_spot_fraction, generator=generator)
        err = (self(masked).float() - noisy.float())[mask]
        return (err ** 2).mean() if self.plan.enhance.loss == "mse" else err.abs().mean()

    def restore(self, image: torch.Tensor) -> torch.Tensor:
        """(C, H, W) normalised slice of any size -> restored slice (padded to the network's stride)."""
        h, w = image.shape[-2:]
        return self(pad_to_stride(image[None], stride_of(self.plan)))[0, :, :h, :w]

    def validation_step(self, index, batch_idx):
        degraded, clean, _ = self.val_pairs[int(index)]
        if self.plan.enhance.degradation == "none":
            # no clean image: score the blind-spot prediction of masked noisy pixels (fixed masks),
            # as PSNR against those noisy values -- higher is better, as for supervised runs
            g = torch.Generator().manual_seed(int(index))
            mse = float(self.blind_spot_loss_mse(degraded[None].to(self.device), g))
            self._psnr.append((10 * math.log10(1 / max(mse, 1e-12)), float("nan")))
            return
        out = self.restore(degraded.to(self.device)).float().cpu()
        self._psnr.append((psnr(out, clean), psnr(degraded, clean)))

    def blind_spot_loss_mse(self, noisy: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        s = stride_of(self.plan)
        h, w = noisy.shape[-2:]
        x = noisy[..., : h - h % s, : w - w % s]
        masked, mask = blind_spot(x, max(self.plan.enhance.blind_spot_fraction, 0.05), generator=generator)
        return ((self(masked).float() - x.float())[mask] ** 2).mean()

    def on_validation_epoch_end(self) -> None:
        if not self._psnr:
            return
        p = np.array(self._psnr, dtype=np.float64)
        self._psnr.clear()
        score = float(np.mean(p[:, 0]))
        before = float(np.mean(p[:, 1])) if np.isfinite(p[:, 1]).all() else None
        self.log("val/psnr", score, prog_bar=True)
        self.log("val/score", score)
        self.epoch_summary = {"train_loss": self.mean_train_loss, "val_psnr": score, "val_psnr_degraded": before}
