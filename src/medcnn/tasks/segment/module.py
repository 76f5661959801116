"""The segmentation task: U-Net, Dice + cross-entropy on patches, sliding-window Dice on whole
validation cases. The trainer (``medcnn.train``) supplies devices, precision, checkpoints, logs.

With a field-of-view mask (DRIVE-style data, ``segment.use_fov``) the loss and the metrics only
count pixels inside the field of view, as the vessel-segmentation literature does.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from medcnn.infer.sliding import sliding_logits
from medcnn.models import deep_supervision_weights, network_from_plan
from medcnn.plan import Plan, window_of
from medcnn.tasks.base import TaskModule
from medcnn.transforms.seg_augment import SegAugment

IGNORE = 255


def build_seg_network(plan: Plan) -> torch.nn.Module:
    return network_from_plan(plan, plan.num_classes)


def dice_ce_loss(logits: torch.Tensor, y: torch.Tensor, fov: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy + soft Dice over the foreground labels (batch Dice, as nnU-Net), both restricted
    to the field of view when one is given."""
    from monai.losses import DiceLoss

    logits = logits.float()
    target = y[:, 0].long()
    mask = None
    if fov is not None and fov.numel():
        mask = fov.float()
        target = torch.where(fov[:, 0] > 0, target, torch.full_like(target, IGNORE))
    ce = F.cross_entropy(logits, target, ignore_index=IGNORE)
    probs = torch.softmax(logits, 1)
    onehot = F.one_hot(y[:, 0].long(), logits.shape[1]).movedim(-1, 1).float()
    if mask is not None:
        probs, onehot = probs * mask, onehot * mask
    dice = DiceLoss(include_background=False, batch=True, smooth_nr=1e-5, smooth_dr=1e-5)(probs, onehot)
    return ce + dice


def dice_per_label(pred: torch.Tensor, ref: torch.Tensor, labels: list[int], fov: torch.Tensor | None = None) -> list[float]:
    """Dice of each label between two label maps (NaN when the label is absent from both)."""
    if fov is not None and fov.numel():
        inside = fov.bool()
        pred, ref = pred[inside], ref[inside]
    out = []
    for lab in labels:
        p, r = pred == lab, ref == lab
        denom = int(p.sum()) + int(r.sum())
        out.append(float("nan") if denom == 0 else 2.0 * int((p & r).sum()) / denom)
    return out


class SegmentationTask(TaskModule):
    def __init__(self, plan: dict):
        super().__init__()
        self.save_hyperparameters({"plan": plan})
        self.plan = Plan.from_dict(plan)
        self.net = build_seg_network(self.plan)
        self.augment = SegAugment(self.plan.augment, self.plan.spatial_dims, self.plan.mirror_axes)
        self.val_cases: list = []  # PreparedCase, set by the engine (not saved in checkpoints)
        self._dice: list[list[float]] = []
        self.epoch_summary: dict[str, float] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.contiguous())

    def step_loss(self, batch) -> torch.Tensor:
        x, y, fov = batch
        with torch.no_grad():
            x, y, fov = self.augment(x, y, fov)
        out = self(x)
        fov = fov if self.plan.segment.use_fov else None
        if out.ndim == x.ndim + 1:  # deep supervision: (B, heads, K, *S)
            return sum(w * dice_ce_loss(out[:, i], y, fov) for i, w in enumerate(deep_supervision_weights(out.shape[1])))
        return dice_ce_loss(out, y, fov)

    def predict_logits(self, image: torch.Tensor) -> torch.Tensor:
        """(C, *S) normalised case -> (K, *S) logits by sliding windows (+ mirrored views if planned)."""
        seg = self.plan.segment
        return sliding_logits(self.net, image, window_of(seg), overlap=seg.sw_overlap,
                              batch_size=2 * self.plan.batch_size, flips=False, num_classes=self.plan.num_classes)

    def validation_step(self, index, batch_idx):
        case = self.val_cases[int(index)]
        logits = self.predict_logits(case.image.to(self.device))
        pred = logits.argmax(0).cpu()
        fov = case.fov[0] if (case.fov is not None and self.plan.segment.use_fov) else None
        self._dice.append(dice_per_label(pred, case.label[0], list(range(1, self.plan.num_classes)), fov))

    def on_validation_epoch_end(self) -> None:
        if not self._dice:
            return
        d = np.array(self._dice, dtype=np.float64)
        self._dice.clear()
        per_label = np.nanmean(d, axis=0) if np.isfinite(d).any() else np.zeros(d.shape[1])
        score = float(np.nanmean(per_label))
        self.log("val/dice", score if math.isfinite(score) else 0.0, prog_bar=True)
        self.log("val/score", score if math.isfinite(score) else 0.0)
        self.epoch_summary = {"train_loss": self.mean_train_loss,
                              "val_dice": score}
        for name, v in zip(self.plan.class_names[1:], per_label):
            self.epoch_summary[f"val_dice_{name}"] = float(v)
