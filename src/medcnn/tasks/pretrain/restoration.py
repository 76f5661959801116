"""Self-supervised pretraining of a segmentation U-Net by restoration (issue #6), 2D or 3D.

The network a segmentation plan would train learns to undo corruptions of unlabeled image patches
(the pretext of Models Genesis, Zhou et al. 2021): boxes painted over with noise (in-painting),
everything outside a box replaced (out-painting), a random monotone intensity curve and mild
noise. Restoring anatomy from its surroundings needs the features a segmenter needs, and the
whole U-Net (encoder and decoder) learns them; only the output layers are new when a
segmentation run starts from it (``--pretrained RUN``). Patches are sampled as the segmentation
plan samples them, corruption runs on whole batches as tensors. The checkpoint is chosen on the
restoration error of fixed corrupted patches of the validation cases.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from medcnn.models import deep_supervision_weights, network_from_plan
from medcnn.plan import Plan
from medcnn.tasks.base import TaskModule
from medcnn.transforms.seg_augment import SegAugment

BOXES = (1, 4)  # in-painted boxes per patch
BOX_SIDE = (0.2, 0.45)  # of the patch side, per axis (3D: 1-9 % of the patch per box)
OUTPAINT_P = 0.2  # share of patches out-painted instead (everything outside one large box)
GAMMA_P, GAMMA = 0.5, (0.5, 2.0)  # random intensity curve
NOISE = 0.1  # additive Gaussian noise on every corrupted patch (the images are z-scored)


def _box(shape: tuple[int, ...], lo: float, hi: float, g: torch.Generator | None) -> tuple[slice, ...]:
    out = []
    for n in shape:
        side = max(1, int(n * (lo + (hi - lo) * float(torch.rand((), generator=g)))))
        start = int(torch.randint(0, n - side + 1, (), generator=g))
        out.append(slice(start, start + side))
    return tuple(out)


def corrupt(x: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
    """(B, C, *S) normalised patches -> corrupted copies (the restoration targets are ``x``); random
    draws from ``g`` (CPU) or torch's global generator, so a seeded run corrupts alike on any device."""
    y = x.clone()
    spatial = tuple(x.shape[2:])
    for b in range(len(x)):
        v = y[b]
        if float(torch.rand((), generator=g)) < GAMMA_P:
            lo, hi = v.amin(), v.amax()
            gamma = GAMMA[0] + (GAMMA[1] - GAMMA[0]) * float(torch.rand((), generator=g))
            v.copy_(((v - lo) / (hi - lo).clamp_min(1e-6)).pow(gamma) * (hi - lo) + lo)
        fill = torch.randn(v.shape, generator=g).to(v) * v.std().clamp_min(1e-3) + v.mean()
        if float(torch.rand((), generator=g)) < OUTPAINT_P:
            keep = (slice(None),) + _box(spatial, 0.4, 0.75, g)
            inner = v[keep].clone()
            v.copy_(fill)
            v[keep] = inner
        else:
            for _ in range(int(torch.randint(BOXES[0], BOXES[1] + 1, (), generator=g))):
                box = (slice(None),) + _box(spatial, *BOX_SIDE, g)
                v[box] = fill[box]
    return y + NOISE * torch.randn(y.shape, generator=g).to(y)


class RestorationTask(TaskModule):
    def __init__(self, plan: dict):
        super().__init__()
        self.save_hyperparameters({"plan": plan})
        self.plan = Plan.from_dict(plan)
        self.net = network_from_plan(self.plan, self.plan.num_classes)  # num_classes = image channels: the restored image
        self.augment = SegAugment(self.plan.augment, self.plan.spatial_dims, self.plan.mirror_axes)
        self.epoch_summary: dict[str, float] = {}

    def restoration_loss(self, x: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
        out = self.net(corrupt(x, g).contiguous())
        if out.ndim == x.ndim + 1:  # deep supervision: every head restores
            return sum(w * F.l1_loss(out[:, i].float(), x) for i, w in enumerate(deep_supervision_weights(out.shape[1])))
        return F.l1_loss(out.float(), x)

    def step_loss(self, batch) -> torch.Tensor:
        x, y, fov = batch
        with torch.no_grad():
            x, _, _ = self.augment(x, y, fov)
        return self.restoration_loss(x.float())

    def on_validation_epoch_start(self) -> None:
        self._val_sum, self._val_n = 0.0, 0
        self._gen = torch.Generator().manual_seed(12345)  # the same corruptions every epoch

    def validation_step(self, batch, batch_idx):
        x = batch[0].float()
        loss = self.restoration_loss(x, self._gen)
        self._val_sum += float(loss) * len(x)
        self._val_n += len(x)

    def on_validation_epoch_end(self) -> None:
        val = self._val_sum / max(self._val_n, 1)
        self.log("val/score", -val)
        self.epoch_summary = {"train_loss": self.mean_train_loss, "val_restoration_l1": val}
