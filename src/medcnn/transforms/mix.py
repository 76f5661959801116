"""MixUp and CutMix on whole classification batches (2D and 3D): images and their labels mixed
together, so the loss trains on soft targets.

Written here rather than taken from a library: MONAI's ``CutMix`` draws one box position for the
whole batch and its ``__call__`` passes the labels through the image mask (one-hot labels come out
as the partner's labels only), and kornia's ``RandomMixUpV2``/``RandomCutMixV2`` are 2D only.
"""
from __future__ import annotations

import torch


def mix_batch(x: torch.Tensor, mixup: float = 0.0, cutmix: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mix every sample of ``x`` (B, C, *spatial) with a random partner of the same batch.

    ``mixup`` and ``cutmix`` are the Beta(alpha, alpha) parameters (0: off); with both on, each batch
    uses one of the two with equal odds (as timm's Mixup). Returns ``(mixed, perm, lam)``: sample i
    is now ``lam[i]`` of itself and ``1 - lam[i]`` of sample ``perm[i]`` (for CutMix, ``lam`` is the
    share of the image left outside the pasted box, after the box is clipped at the border)."""
    if mixup <= 0 and cutmix <= 0:
        raise ValueError("mix_batch needs mixup > 0 or cutmix > 0")
    b, dev = x.shape[0], x.device
    perm = torch.randperm(b, device=dev)
    use_cut = cutmix > 0 and (mixup <= 0 or bool(torch.rand(()) < 0.5))
    alpha = cutmix if use_cut else mixup
    lam = torch.distributions.Beta(alpha, alpha).sample((b,)).to(dev)
    if not use_cut:
        w = lam.view(b, *(1,) * (x.ndim - 1)).to(x.dtype)
        return w * x + (1 - w) * x[perm], perm, lam
    dims = x.shape[2:]
    side = (1 - lam).pow(1.0 / len(dims))  # box side as a fraction of each axis: box volume = 1 - lam
    inside = torch.ones((b,) + tuple(dims), dtype=torch.bool, device=dev)
    for axis, n in enumerate(dims):
        centre = torch.rand(b, device=dev) * n
        half = side * n / 2
        pos = torch.arange(n, device=dev, dtype=torch.float32)
        along = (pos[None] >= (centre - half)[:, None].floor()) & (pos[None] < (centre + half)[:, None].ceil())
        shape = [b] + [1] * len(dims)
        shape[axis + 1] = n
        inside = inside & along.view(shape)
    lam = 1 - inside.flatten(1).float().mean(1)
    box = inside.unsqueeze(1)
    return torch.where(box, x[perm], x), perm, lam
