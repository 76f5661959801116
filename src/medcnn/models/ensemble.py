"""Averaged predictions: several trained networks (an ensemble) or one network over symmetric
copies of the input (test-time augmentation). Both return logits of the averaged probabilities,
so everything downstream -- probabilities, temperature scaling -- treats them like one network."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

TTA_MODES = ("none", "flip", "dihedral", "scale")
SCALES = (0.9, 1.1)  # "scale" views: the training augmentation's light preset scales by 0.9-1.1


def mean_probability_logits(outputs: list[torch.Tensor], multilabel: bool) -> torch.Tensor:
    """Average the probabilities (softmax, or sigmoid for multi-label) of several outputs and
    return logits of that average: log-probabilities, or logit(p) for multi-label."""
    outs = [o.float() for o in outputs]
    if multilabel:
        p = torch.stack([torch.sigmoid(o) for o in outs]).mean(0).clamp(1e-7, 1 - 1e-7)
        return torch.log(p) - torch.log1p(-p)
    return torch.stack([torch.log_softmax(o, dim=1) for o in outs]).logsumexp(0) - torch.log(
        torch.tensor(float(len(outs))))


class MeanEnsemble(nn.Module):
    def __init__(self, members: list[nn.Module], label_type: str):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.multilabel = label_type == "multilabel"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mean_probability_logits([m(x) for m in self.members], self.multilabel)


def zoomed(x: torch.Tensor, factor: float) -> torch.Tensor:
    """The input magnified by ``factor`` about its centre, same size: resized, then centre-cropped
    (zoom in) or padded with its border values (zoom out) -- plain ops, so ONNX export keeps them."""
    size = x.shape[2:]
    new = [max(1, round(n * factor)) for n in size]
    y = F.interpolate(x, size=new, mode="bilinear" if x.ndim == 4 else "trilinear", align_corners=False)
    if factor < 1:
        pad = []
        for n, m in zip(reversed(size), reversed(new)):  # F.pad lists the last axis first
            pad += [(n - m) // 2, n - m - (n - m) // 2]
        return F.pad(y, pad, mode="replicate")
    starts = [(m - n + 1) // 2 for n, m in zip(size, new)]  # the centre crop, rounded as the padding is
    return y[(slice(None), slice(None), *(slice(s, s + n) for s, n in zip(starts, size)))]


def symmetric_views(x: torch.Tensor, mode: str) -> list[torch.Tensor]:
    """``flip``: the input and its mirror image (last axis); ``dihedral`` (2D): the 8 rotations by
    90 degrees and their mirror images, for images with no canonical orientation; ``scale``: the
    input and its copies magnified by SCALES, for images whose mirror image is another class."""
    if mode == "none":
        return [x]
    if mode == "flip":
        return [x, x.flip(-1)]
    if mode == "dihedral":
        if x.ndim != 4:
            raise ValueError("dihedral test-time augmentation is 2D only")
        rots = [torch.rot90(x, k, dims=(-2, -1)) for k in range(4)]
        return rots + [r.flip(-1) for r in rots]
    if mode == "scale":
        return [x] + [zoomed(x, f) for f in SCALES]
    raise ValueError(f"unknown test-time augmentation {mode!r} (choose from {', '.join(TTA_MODES)})")


def dense_symmetric_mean(fn, x: torch.Tensor, mode: str) -> torch.Tensor:
    """The mean of a dense prediction ``fn`` (an output the size of its input, e.g. a restored image)
    over the symmetric views of ``x``, each mapped back to ``x``'s orientation: ``none``, ``flip``
    (the mirror image too) or ``dihedral`` (2D: the 8 rotations and mirrors; the self-ensemble of
    image restoration)."""
    if mode == "none":
        return fn(x)
    if mode == "flip":
        return (fn(x) + fn(x.flip(-1).contiguous()).flip(-1)) / 2
    if mode == "dihedral":
        if x.ndim != 4:
            raise ValueError("dihedral test-time augmentation is 2D only")
        total = None
        for k in range(4):
            for mirrored in (False, True):
                v = torch.rot90(x, k, dims=(-2, -1))
                y = fn((v.flip(-1) if mirrored else v).contiguous())
                y = torch.rot90(y.flip(-1) if mirrored else y, -k, dims=(-2, -1))
                total = y if total is None else total + y
        return total / 8
    raise ValueError(f"test-time augmentation {mode!r} has no dense mean (choose none, flip or dihedral)")


class SymmetryTTA(nn.Module):
    def __init__(self, net: nn.Module, mode: str, label_type: str):
        super().__init__()
        self.net, self.mode, self.multilabel = net, mode, label_type == "multilabel"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        views = symmetric_views(x, self.mode)
        return mean_probability_logits([self.net(v.contiguous()) for v in views], self.multilabel)
