"""Augmentation of segmentation batches: one random spatial transform per sample applied to the
image (linear) and to its label map / field of view (nearest), plus intensity changes of the image.

Spatial: mirroring along every axis, rotation (in-plane in 2D, about each axis in 3D) and
isotropic scaling, through one ``affine_grid`` / ``grid_sample`` per batch; elastic deformation.
Intensity (normalised images): multiplicative brightness, contrast about the mean, then the plan's
artifacts (gamma, Gaussian noise, blur, MR bias field / ghosting / motion; ``transforms.artifacts``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from medcnn.plan import AugmentConfig
from medcnn.transforms.artifacts import apply_artifacts, elastic_grid


def _rotation(angles: torch.Tensor, dims: int) -> torch.Tensor:
    """(B,) angles (2D) or (B, 3) (3D) in radians -> (B, dims, dims) rotation matrices."""
    if dims == 2:
        c, s = torch.cos(angles), torch.sin(angles)
        return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
    out = torch.eye(3, device=angles.device).repeat(angles.shape[0], 1, 1)
    for axis in range(3):
        c, s = torch.cos(angles[:, axis]), torch.sin(angles[:, axis])
        i, j = [a for a in range(3) if a != axis]
        r = torch.eye(3, device=angles.device).repeat(angles.shape[0], 1, 1)
        r[:, i, i], r[:, i, j], r[:, j, i], r[:, j, j] = c, -s, s, c
        out = out @ r
    return out


def _warp(chosen: torch.Tensor, grid: torch.Tensor, x: torch.Tensor, y: torch.Tensor, fov: torch.Tensor | None,
          padding: str, align_corners: bool) -> None:
    """Resample the ``chosen`` samples in place: the image linearly, label map and FOV nearest."""
    x[chosen] = F.grid_sample(x[chosen], grid, mode="bilinear", padding_mode=padding, align_corners=align_corners)
    for m in (y, fov):
        if m is not None and m.numel():
            m[chosen] = F.grid_sample(m[chosen].float(), grid, mode="nearest", padding_mode=padding,
                                      align_corners=align_corners).to(m.dtype)


class SegAugment:
    """``mirror_axes``: the spatial axes mirrored when ``cfg.flip`` is on (default: every axis);
    a plan gives ``Plan.mirror_axes``, the axes along which mirroring keeps its labels right."""

    def __init__(self, cfg: AugmentConfig, spatial_dims: int, mirror_axes: list[int] | None = None):
        self.cfg, self.dims = cfg, spatial_dims
        self.mirror_axes = list(range(spatial_dims)) if mirror_axes is None else list(mirror_axes)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, fov: torch.Tensor | None = None):
        cfg, d, b, dev = self.cfg, self.dims, x.shape[0], x.device  # random draws on x's device
        if cfg.p <= 0:
            return x, y, fov
        if cfg.flip:
            for axis in self.mirror_axes:
                m = torch.rand(b, device=dev) < 0.5
                if m.any():  # x[m] is (n, C, *spatial): spatial axis `axis` is dimension axis + 2
                    x[m] = x[m].flip(axis + 2)
                    y[m] = y[m].flip(axis + 2)
                    if fov is not None and fov.numel():
                        fov[m] = fov[m].flip(axis + 2)
        spatial = (torch.rand(b, device=dev) < cfg.p) & (cfg.rotate_deg > 0 or tuple(cfg.scale) != (1.0, 1.0))
        if spatial.any():
            n = int(spatial.sum())
            ang = (torch.rand(n, device=dev) if d == 2 else torch.rand(n, 3, device=dev)) * 2 - 1
            rot = _rotation(ang * math.radians(cfg.rotate_deg), d)
            lo, hi = cfg.scale
            scale = lo + torch.rand(n, device=dev) * (hi - lo)
            theta = torch.cat([rot / scale.view(-1, 1, 1), torch.zeros(n, d, 1, device=dev)], dim=2)
            grid = F.affine_grid(theta, [n, 1, *x.shape[2:]], align_corners=False)
            _warp(spatial, grid, x, y, fov, padding="zeros", align_corners=False)
        elastic = (torch.rand(b, device=dev) < cfg.p) if cfg.elastic > 0 else torch.zeros(b, dtype=torch.bool, device=dev)
        if elastic.any():
            grid = elastic_grid(int(elastic.sum()), x.shape[2:], cfg.elastic, device=dev)
            _warp(elastic, grid, x, y, fov, padding="border", align_corners=True)
        view = (b,) + (1,) * (x.ndim - 1)
        rand = lambda: torch.rand(view, device=dev)  # noqa: E731
        apply = lambda: (rand() < cfg.p).float()  # noqa: E731
        if cfg.brightness > 0:
            x = x * (1 + apply() * (rand() * 2 - 1) * cfg.brightness)
        if cfg.contrast > 0:
            mean = x.mean(dim=tuple(range(1, x.ndim)), keepdim=True)
            x = x + apply() * (x - mean) * (rand() * 2 - 1) * cfg.contrast
        return apply_artifacts(x, cfg).contiguous(), y.contiguous(), fov
