"""Augmentation of whole training batches as tensors (kornia), for 2D and 3D.

Per-sample work in DataLoader worker processes would steal the two CPU cores from the
network; kornia applies random affine/flip/intensity changes to a whole batch at once, with
parameters drawn per sample.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medcnn.plan import AUGMENT_PRESETS, AugmentConfig, augment_preset
from medcnn.transforms.artifacts import apply_artifacts, elastic_grid

# The presets are plan data (medcnn.plan.AUGMENT_PRESETS), also offered here beside the augmentation they set.
PRESETS = AUGMENT_PRESETS
preset = augment_preset


class BatchAugment(nn.Module):
    """Random affine (+flip) and brightness/contrast on a float batch (B, C, *spatial) in [0, 1]."""

    def __init__(self, cfg: AugmentConfig, spatial_dims: int):
        super().__init__()
        import kornia.augmentation as K

        self.cfg = cfg
        ops: list[nn.Module] = []
        if cfg.p > 0:
            geometric = cfg.rotate_deg > 0 or cfg.translate > 0 or tuple(cfg.scale) != (1.0, 1.0)
            if spatial_dims == 2:
                if cfg.flip:
                    ops.append(K.RandomHorizontalFlip(p=0.5))
                if geometric:
                    ops.append(K.RandomAffine(degrees=cfg.rotate_deg, translate=(cfg.translate, cfg.translate),
                                              scale=tuple(cfg.scale), padding_mode="border", p=cfg.p))
            else:
                if cfg.flip:
                    ops.append(K.RandomHorizontalFlip3D(p=0.5))
                if geometric:
                    t = cfg.translate
                    ops.append(K.RandomAffine3D(degrees=cfg.rotate_deg, translate=(t, t, t),
                                                scale=tuple(cfg.scale), p=cfg.p))
        self.spatial = nn.Sequential(*ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.p <= 0:
            return x
        shape = x.shape
        x = self.spatial(x).reshape(shape).contiguous()
        b = x.shape[0]
        view = (b,) + (1,) * (x.ndim - 1)
        apply = (torch.rand(view, device=x.device) < self.cfg.p).to(x.dtype)
        if self.cfg.contrast > 0:
            c = 1 + (torch.rand(view, device=x.device) * 2 - 1) * self.cfg.contrast
            mean = x.mean(dim=tuple(range(1, x.ndim)), keepdim=True)
            x = x + apply * ((x - mean) * c + mean - x)
        if self.cfg.brightness > 0:
            x = x + apply * (torch.rand(view, device=x.device) * 2 - 1) * self.cfg.brightness
        if self.cfg.elastic > 0:
            chosen = torch.rand(b, device=x.device) < self.cfg.p
            if chosen.any():
                grid = elastic_grid(int(chosen.sum()), x.shape[2:], self.cfg.elastic, device=x.device)
                x[chosen] = F.grid_sample(x[chosen], grid.to(x.dtype), mode="bilinear", padding_mode="border",
                                          align_corners=True)
        return apply_artifacts(x, self.cfg).clamp(0, 1)
