"""Whole-image logits from a patch network: MONAI sliding windows (Gaussian-weighted overlap, as
nnU-Net), optionally averaged over mirrored views (test-time augmentation)."""
from __future__ import annotations

import itertools

import torch


def sliding_logits(net: torch.nn.Module, image: torch.Tensor, patch: list[int], *, overlap: float = 0.5,
                   batch_size: int = 4, flips: bool = False) -> torch.Tensor:
    """(C, *S) -> (K, *S) float logits (mean of softmax-free logits over the views).

    Images smaller than the patch are padded by MONAI and cropped back."""
    from monai.inferers import sliding_window_inference

    was_training = net.training
    net.eval()
    dims = image.ndim - 1
    x = image[None].float()
    views = [()]
    if flips:
        views += [c for r in range(1, dims + 1) for c in itertools.combinations(range(2, 2 + dims), r)]
    out = None
    with torch.inference_mode():
        for axes in views:
            xi = x.flip(axes) if axes else x
            y = sliding_window_inference(xi, roi_size=list(patch), sw_batch_size=batch_size, predictor=net,
                                         overlap=overlap, mode="gaussian")
            y = (y.flip(axes) if axes else y).float()
            out = y if out is None else out + y
    if was_training:
        net.train()
    return out[0] / len(views)
