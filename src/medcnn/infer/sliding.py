"""Whole-image logits from a patch network: MONAI sliding windows (Gaussian-weighted overlap, as
nnU-Net), optionally averaged over mirrored views (test-time augmentation).

The mirrored views go through the network together (one sliding-window pass over a batch of
views, so small volumes fill a batch instead of running batch-1 forwards), in groups whose
inputs and logits stay under ``VIEW_BYTES``; large images (a 4288 x 2848 fundus photograph) go one
view at a time.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from contextlib import nullcontext

import torch

VIEW_BYTES = 512 * 2**20  # inputs and logits of the views processed together (float32)


def mirror_axes(dims: int, spatial: Sequence[int] | None = None) -> list[tuple[int, ...]]:
    """Every mirroring of the spatial axes of an (N, C, *S) tensor (of the ``spatial`` axes only,
    0 = first spatial axis, if given), the identity first."""
    axes = [2 + a for a in (range(dims) if spatial is None else sorted(set(spatial)))]
    return [()] + [c for r in range(1, len(axes) + 1) for c in itertools.combinations(axes, r)]


def distinct_mirrors(shape: Sequence[int], patch: Sequence[int], flips: bool | Sequence[int]) -> list[int]:
    """The spatial axes whose mirroring can change the logits: along an axis where the window (or the
    image) is one voxel deep, every window holds one slice alone, which mirroring leaves as it is, so
    that view would repeat another (a slice-wise model on a volume: half of its views)."""
    axes = range(len(shape)) if flips is True else flips
    return [a for a in axes if shape[a] > 1 and patch[a] > 1]


def shift_offsets(dims: int, shift: int) -> list[tuple[int, ...]]:
    """Where each shifted view places the image: 0 or ``shift`` voxels along every axis (2**dims views)."""
    return list(itertools.product((0, shift), repeat=dims)) if shift > 0 else [(0,) * dims]


def sliding_logits(net: torch.nn.Module, image: torch.Tensor, patch: list[int], *, overlap: float = 0.5,
                   batch_size: int = 4, flips: bool | Sequence[int] = False, num_classes: int | None = None,
                   bf16: bool = False, shift: int = 0) -> torch.Tensor:
    """(C, *S) -> (K, *S) float logits (mean of softmax-free logits over the views).

    ``flips``: True averages over every mirroring, a list of spatial axes over the mirrorings of those.
    ``shift`` > 0 also averages over copies of the image moved by 0 or ``shift`` voxels along each
    axis (zero-padded), so the network's stride grid and the window's padding fall elsewhere on it.
    Images smaller than the patch are padded by MONAI and cropped back. ``bf16`` runs the network
    under bfloat16 autocast (CPU with AVX-512 bf16, or GPU)."""
    from monai.inferers import sliding_window_inference

    was_training = net.training
    net.eval()
    dims = image.ndim - 1
    x = image[None].float()
    if shift > 0:
        x = torch.nn.functional.pad(x, [0, shift] * dims)  # room for every shifted copy; cropped at the end
    mirrors = [()] if not flips else mirror_axes(dims, distinct_mirrors(x.shape[2:], patch, flips))
    views = [(m, o) for o in shift_offsets(dims, shift) for m in mirrors]
    k = num_classes or 8
    per_view = (x.shape[1] + 2 * k) * x[0, 0].numel() * 4  # its input, MONAI's output sum and its copy
    group = max(1, min(len(views), VIEW_BYTES // max(per_view, 1)))
    out = None
    cast = torch.autocast(x.device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    with torch.inference_mode(), cast:
        for g in range(0, len(views), group):
            chunk = views[g:g + group]
            xs = torch.cat([_view(x, a, o) for a, o in chunk])
            y = sliding_window_inference(xs, roi_size=list(patch), sw_batch_size=batch_size, predictor=net,
                                         overlap=overlap, mode="gaussian")
            for i, (a, o) in enumerate(chunk):
                yi = _view(y[i:i + 1].float(), a, tuple(-v for v in o))
                out = yi if out is None else out + yi
    if was_training:
        net.train()
    out = out[0] / len(views)
    return out[(slice(None), *(slice(0, n - shift) for n in out.shape[1:]))] if shift > 0 else out


def _view(x: torch.Tensor, flip: tuple[int, ...], offset: tuple[int, ...]) -> torch.Tensor:
    """``x`` rolled by ``offset`` along its spatial axes, then mirrored along ``flip``; with a negative
    offset, the inverse (mirror back, then roll back). The roll only moves zero padding around."""
    axes = tuple(range(2, x.ndim))
    if any(v < 0 for v in offset):
        x = x.flip(flip) if flip else x
        return torch.roll(x, offset, axes) if any(offset) else x
    x = torch.roll(x, offset, axes) if any(offset) else x
    return x.flip(flip) if flip else x
