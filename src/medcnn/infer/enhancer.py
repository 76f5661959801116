"""A trained enhancement model from its run folder: restore slices, images and volumes in
physical units (the plan's affine normalisation in and out, nothing clipped)."""
from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from medcnn.errors import InputError
from medcnn.io.image import Image
from medcnn.models.ensemble import dense_symmetric_mean
from medcnn.plan import Plan
from medcnn.transforms.normalize import get_normalizer
from medcnn.utils.precision import resolve_precision

log = logging.getLogger("medcnn.infer")
# a fixed-window (CT) model has seen normalised values in about [0, 1]: an input with more than
# FAR_SHARE of its voxels over FAR_MARGIN windows outside is not what it was trained on
FAR_MARGIN, FAR_SHARE = 0.5, 0.01
LABEL_VALUES = 16  # an integer image with at most this many values is a label map or mask, not a scan
NOISE_FACTOR = 2.0  # estimated noise above this many times the highest trained level: unlike training
NOISE_KINDS = ("gaussian", "rician", "speckle")


def pad_to_stride(x: torch.Tensor, stride: int) -> torch.Tensor:
    """(B, C, H, W) padded at the bottom/right to multiples of ``stride`` (reflect where possible)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    if not (ph or pw):
        return x
    return F.pad(x, (0, pw, 0, ph), mode="reflect" if ph < h and pw < w else "replicate")


def stride_of(plan: Plan) -> int:
    """How much the plan's U-Net downsamples: inputs are padded to multiples of it."""
    strides = plan.model.kwargs.get("strides", [1])
    return int(np.prod(strides))


class Enhancer:
    def __init__(self, plan: Plan, net: torch.nn.Module, run_dir: Path | None = None, bf16: bool | None = None):
        self.plan, self.net, self.run_dir = plan, net.eval(), run_dir
        exported = getattr(net, "exported", False)  # an ONNX graph adds the residual itself, in float32
        self.channels_last = not exported  # a torch network: 20-35 % faster on the CPU with channels-last tensors
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.add_input = plan.enhance.residual and not exported
        self.stride = stride_of(plan)
        self.bf16 = resolve_precision(plan.precision).startswith("bf16") and not exported if bf16 is None else bf16

    def with_network(self, net: torch.nn.Module) -> "Enhancer":
        """The same enhancer around another network (e.g. its ONNX export)."""
        return Enhancer(self.plan, net, self.run_dir)

    @torch.no_grad()
    def restore_normalised(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) normalised slices -> restored, same shape (padded to the U-Net's stride inside;
        with the plan's ``tta``, the mean over the symmetric views of the input)."""
        h, w = x.shape[-2:]
        xp = pad_to_stride(x, self.stride)
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else nullcontext()

        def one_view(v: torch.Tensor) -> torch.Tensor:
            with ctx:
                out = self.net(v.contiguous(memory_format=torch.channels_last) if self.channels_last
                               else v.contiguous()).float()
            return v.float() + out if self.add_input else out

        return dense_symmetric_mean(one_view, xp, self.plan.tta)[..., :h, :w]

    def restore_array(self, a: np.ndarray, batch: int = 16) -> np.ndarray:
        """(C, H, W) or (C, X, Y, Z) in physical units -> restored, same shape and units (volumes
        slice by slice along the last axis). Values below the normaliser's floor (CT: padding below
        air) are restored as the floor and given back unchanged."""
        a = np.asarray(a, np.float32)
        norm = get_normalizer(self.plan)
        floor = norm.floor
        pad = a < floor if floor is not None else None
        x = np.maximum(a, floor) if pad is not None and pad.any() else a
        norm = norm.fit(x)
        t = norm.forward(torch.from_numpy(x))
        if t.ndim == 3:
            out = self.restore_normalised(t[None])[0]
        else:
            slices = t.movedim(-1, 0)  # (Z, C, X, Y)
            out = torch.cat([self.restore_normalised(slices[i:i + batch]) for i in range(0, len(slices), batch)])
            out = out.movedim(0, -1)
        out = norm.inverse(out).numpy()
        if pad is not None and pad.any():
            out[pad] = a[pad]
        return out

    def range_warning(self, a: np.ndarray) -> str | None:
        """A one-line warning when a fixed-window model gets intensities far outside its training
        window (e.g. an MR image, or CT stored values without their rescale, given to a CT model);
        None when the input fits. Per-image (percentile) normalisation maps every input to its own
        range, so those models never warn."""
        norm = get_normalizer(self.plan)
        if norm.name != "window":
            return None
        a = np.asarray(a, np.float32)
        body = a[a >= norm.floor] if norm.floor is not None else a.ravel()  # padding below it is restored as is
        if not body.size:
            return None
        lo, hi = norm.window
        t = (body - lo) / (hi - lo)
        far = float(np.mean((t < -FAR_MARGIN) | (t > 1 + FAR_MARGIN)))
        if far <= FAR_SHARE:
            return None
        return (f"{far:.0%} of the values lie far outside the training window [{lo:g}, {hi:g}] "
                f"(input range {float(body.min()):g} to {float(body.max()):g}): restored as given, "
                "but the model never saw such intensities")

    def content_warning(self, a: np.ndarray) -> str | None:
        """A one-line warning when the input is not what a denoiser was trained on: a label map (few
        integer values: nothing to denoise), or noise far above the trained levels (scikit-image's
        wavelet estimate of sigma on the middle slice, in the plan's normalised units)."""
        a = np.asarray(a, np.float32)
        values = np.unique(a[:, ::4, ::4] if a.ndim >= 3 else a)
        if len(values) <= LABEL_VALUES and np.all(np.mod(values, 1) == 0):
            return (f"{len(values)} distinct integer values: a label map or mask, not an image to restore "
                    "(restored as given)")
        if self.plan.enhance.degradation not in NOISE_KINDS or not self.plan.enhance.level:
            return None
        from skimage.restoration import estimate_sigma

        plane = a[0] if a.ndim == 3 else a[0, ..., a.shape[-1] // 2]
        raw = float(estimate_sigma(plane))
        norm = get_normalizer(self.plan)
        if norm.name == "window":  # fixed window: normalised units are the window's width
            width = float(norm.window[1] - norm.window[0])
        else:  # the image's own 0.5-99.5 percentiles, widened by the noise itself (+-2.58 sigma)
            lo, hi = np.percentile(plane, [0.5, 99.5])
            width = max(float(hi - lo) - 5.15 * raw, 0.05 * float(hi - lo), 1e-6)
        sigma, top = raw / width, max(self.plan.enhance.level)
        if sigma > NOISE_FACTOR * top:
            return (f"estimated noise sigma {sigma:.3f} is far above the trained levels (up to {top:.3f}, "
                    "normalised units): the model never saw so much noise")
        return None

    def restore(self, image: Image) -> Image:
        c = self.plan.preprocessing.channels
        if image.channels != c:
            raise InputError(f"the model restores {c}-channel images; this one has {image.channels}",
                             image.meta.get("source"))
        if image.spatial_dims not in (2, 3):
            raise InputError(f"{image.spatial_dims}-D images are not supported", image.meta.get("source"))
        meta = dict(image.meta)
        warning = "; ".join(w for w in (self.range_warning(image.array), self.content_warning(image.array)) if w)
        if warning:  # logged, and kept in the result's meta for the reports of predict and the service
            log.warning("%s: %s", image.meta.get("source") or "input", warning)
            meta["range_warning"] = warning
        return Image(self.restore_array(image.array), image.affine.copy(), meta)
