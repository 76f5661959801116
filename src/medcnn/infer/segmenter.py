"""A trained segmentation model from its run folder: image in, label map on the image's own grid out.

Steps (the plan's, as in training): normalise, resample to the plan's spacing, sliding windows
(+ mirrored views if ``segment.tta_flips`` and validation kept them, shifted views if ``segment.tta_shift``; the members of
an ensemble run averaged), softmax, resample the probabilities back to the input
grid, argmax, the post-processing chosen on validation (RUN/postprocess.json). The result keeps the
input's affine, so NIfTI written from it overlays the input exactly.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medcnn.data.seg_prepare import prepare_image
from medcnn.errors import InputError
from medcnn.infer.sliding import sliding_logits
from medcnn.io.image import Image
from medcnn.plan import Plan, window_of
from medcnn.runs import RunFolder
from medcnn.transforms.spatial import resample_probabilities
from medcnn.utils.precision import resolve_precision


@dataclass
class Segmentation:
    label: Image  # (1, *spatial) uint8 on the input grid, input affine
    probs: np.ndarray | None  # (K, *spatial) float32, when asked for


def keep_largest_component(label: np.ndarray, labels: list[int]) -> np.ndarray:
    """Per label, keep only its largest connected component (full connectivity)."""
    from scipy import ndimage

    out = label.copy()
    structure = ndimage.generate_binary_structure(label.ndim, label.ndim)
    for lab in labels:
        comp, n = ndimage.label(label == lab, structure=structure)
        if n > 1:
            sizes = np.bincount(comp.ravel())[1:]
            out[(comp > 0) & (comp != int(np.argmax(sizes)) + 1)] = 0
    return out


def fill_holes(label: np.ndarray, labels: list[int]) -> np.ndarray:
    """Background enclosed by one label (in 3D: in 3D) becomes that label."""
    from scipy import ndimage

    out = label.copy()
    for lab in labels:
        filled = ndimage.binary_fill_holes(label == lab)
        out[filled & (label == 0)] = lab
    return out


POSTPROCESS = ("none", "largest_component", "fill_holes", "largest_component+fill_holes")


def postprocess(label: np.ndarray, mode: str, num_classes: int) -> np.ndarray:
    labels = list(range(1, num_classes))
    if "largest_component" in mode:
        label = keep_largest_component(label, labels)
    if "fill_holes" in mode:
        label = fill_holes(label, labels)
    return label


def to_label(probs: torch.Tensor, threshold: float = 0.5) -> np.ndarray:
    """The label map of (K, *spatial) probabilities: the most probable class; with one foreground
    label, foreground where its probability exceeds ``threshold`` (0.5: the same as the argmax)."""
    if probs.shape[0] == 2 and threshold != 0.5:
        return (probs[1] > threshold).numpy().astype(np.uint8)
    return probs.argmax(0).numpy().astype(np.uint8)


class Segmenter:
    def __init__(self, plan: Plan, net: torch.nn.Module, run_dir: Path | None = None, post: str | None = None,
                 threshold: float | None = None, mirror: bool | None = None):
        self.plan, self.net, self.run_dir = plan, net.eval(), run_dir
        if post is None:  # chosen on validation by `evaluate` (RUN/postprocess.json), else the plan's
            post = RunFolder(run_dir).postprocess(plan.segment.postprocess) if run_dir else plan.segment.postprocess
        self.post = post
        # one foreground label: its probability threshold, chosen on validation by `evaluate` (0.5 = argmax)
        self.threshold = threshold if threshold is not None else \
            RunFolder(run_dir).foreground_threshold() if run_dir else 0.5
        # the plan's mirrored test-time views, unless validation found them no better than one view
        self.mirror = mirror if mirror is not None else RunFolder(run_dir).mirror_views() if run_dir else True
        # bfloat16 autocast where training would use it (precision auto/bf16 on an AVX-512-bf16 CPU or a
        # GPU): on MSD Hippocampus test Dice .8801 vs .8802 fp32, 2.7x faster (EXPERIMENTS_segment.md)
        self.bf16 = resolve_precision(plan.precision) == "bf16-mixed" and not getattr(net, "exported", False)

    def with_network(self, net: torch.nn.Module) -> "Segmenter":
        """The same segmenter (plan, post-processing) around another network (e.g. its ONNX export)."""
        return Segmenter(self.plan, net, self.run_dir, post=self.post, threshold=self.threshold, mirror=self.mirror)

    def check(self, image: Image, path=None) -> None:
        if image.spatial_dims != self.plan.spatial_dims:
            raise InputError(f"the model segments {self.plan.spatial_dims}D images; this one is "
                             f"{image.spatial_dims}D {image.spatial_shape}", path)
        if image.channels != self.plan.preprocessing.channels:
            raise InputError(f"the model takes {self.plan.preprocessing.channels}-channel images; this one has "
                             f"{image.channels}", path)

    def logits(self, x: torch.Tensor, flips: bool | None = None) -> torch.Tensor:
        """``flips``: None = the plan's mirrored views (``Plan.mirror_tta``) where validation kept them,
        False = none, True = every mirroring along the axes training mirrored."""
        seg = self.plan.segment
        default = self.plan.mirror_tta if self.mirror else False
        return sliding_logits(self.net, x, window_of(seg), overlap=seg.sw_overlap, batch_size=2 * self.plan.batch_size,
                              flips=default if flips is None else flips and self.plan.mirror_axes,
                              num_classes=self.plan.num_classes, bf16=self.bf16, shift=seg.tta_shift)

    def probabilities(self, image: Image, flips: bool | None = None) -> torch.Tensor:
        """(K, *spatial) class probabilities on the input's grid."""
        self.check(image, image.meta.get("source"))
        x = prepare_image(image, self.plan)
        probs = torch.softmax(self.logits(x, flips), 0)
        return resample_probabilities(probs, image.spatial_shape)

    def segment(self, image: Image, *, keep_probs: bool = False, flips: bool | None = None) -> Segmentation:
        probs = self.probabilities(image, flips)
        label = to_label(probs, self.threshold)
        label = postprocess(label, self.post, self.plan.num_classes)
        meta = {k: v for k, v in image.meta.items() if k in ("source", "modality", "spatial_unit")}
        return Segmentation(Image(label[None], image.affine.copy(), meta), probs.numpy() if keep_probs else None)
