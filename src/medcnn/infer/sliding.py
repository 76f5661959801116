"""Whole-image logits from a patch network: MONAI sliding windows (Gaussian-weighted overlap, as
nnU-Net), optionally averaged over mirrored views (test-time augmentation).

The mirrored views go through the network together (one sliding-window pass over a batch of
views, so small volumes fill a batch instead of running batch-1 forwards), in groups whose
logits stay under ``VIEW_BYTES``; large volumes fall back to one view at a time.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from contextlib import nullcontext

import torch

VIEW_BYTES = 512 * 2**20  # logits of the views processed together (float32)


def mirror_axes(dims: int, spatial: Sequence[int] | None = None) -> list[tuple[int, ...]]:
    """Every mirroring of the spatial axes of an (N, C, *S) tensor (of the ``spatial`` axes only,
    0 = first spatial axis, if given), the identity first."""
    axes = [2 + a for a in (range(dims) if spatial is None else sorted(set(spatial)))]
    return [()] + [c for r in range(1, len(axes) + 1) for c in itertools.combinations(axes, r)]


def sliding_logits(net: torch.nn.Module, image: torch.Tensor, patch: list[int], *, overlap: float = 0.5,
                   batch_size: int = 4, flips: bool | Sequence[int] = False, num_classes: int | None = None,
                   bf16: bool = False) -> torch.Tensor:
    """(C, *S) -> (K, *S) float logits (mean of softmax-free logits over the views).

    ``flips``: True averages over every mirroring, a list of spatial axes over the mirrorings of those.
    Images smaller than the patch are padded by MONAI and cropped back. ``bf16`` runs the network
    under bfloat16 autocast (CPU with AVX-512 bf16, or GPU)."""
    from monai.inferers import sliding_window_inference

    was_training = net.training
    net.eval()
    dims = image.ndim - 1
    x = image[None].float()
    views = [()] if not flips else mirror_axes(dims, None if flips is True else flips)
    k = num_classes or 8
    per_view = k * x[0, 0].numel() * 4
    group = max(1, min(len(views), VIEW_BYTES // max(per_view, 1)))
    out = None
    cast = torch.autocast(x.device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    with torch.inference_mode(), cast:
        for g in range(0, len(views), group):
            chunk = views[g:g + group]
            xs = torch.cat([x.flip(a) if a else x for a in chunk])
            y = sliding_window_inference(xs, roi_size=list(patch), sw_batch_size=batch_size, predictor=net,
                                         overlap=overlap, mode="gaussian")
            for i, a in enumerate(chunk):
                yi = y[i:i + 1].float()
                yi = yi.flip(a) if a else yi
                out = yi if out is None else out + yi
    if was_training:
        net.train()
    return out[0] / len(views)
