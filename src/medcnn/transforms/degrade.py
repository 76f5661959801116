"""Degradation models: what an enhancement network learns to undo.

Every model takes a batch of clean images ``(B, C, *spatial)`` in the plan's normalised units
(physical intensities mapped by ``window = (lo, hi)`` to [0, 1]) and returns the degraded batch and
the level used for each image. A level is either fixed (``level=(v,)``) or drawn per image from a
range (``level=(lo, hi)``), which trains one blind model for the whole range.

| kind | level | model |
|---|---|---|
| ``gaussian`` | sigma (normalised units; 25/255 = 0.098) | x + sigma * n |
| ``rician`` | sigma | magnitude of a complex signal with Gaussian noise on both channels (MRI) |
| ``speckle`` | sigma | x * (1 + sigma * n), n correlated over about one pixel (ultrasound-like) |
| ``downsample`` | factor (2, 4) | block average, then bicubic back to the grid (2D); volumes: thick slices along the last axis, linear back |
| ``lowdose-ct`` | photons per detector bin (1e4 is low dose) | Poisson counts in the projection domain, log, FBP (:mod:`medcnn.transforms.ct`) |
| ``sparse-view-ct`` | number of views | FBP from few views (streaks) |
| ``none`` | (any) | the images are the noisy data: self-supervised (Noise2Void) training only |

The CT models need intensities in HU (``window`` maps [0, 1] back to HU) and whole slices (the
projection sees the whole object), so they are applied to whole slices before any cropping.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from medcnn.plan import CT_DEGRADATIONS, DEGRADATIONS, NO_DEGRADATION, NOISE_DEGRADATIONS, check_degradation
from medcnn.transforms import ct

# The kinds of the table above; the plan lists them (EnhanceConfig.degradation) and checks kind, level, window.
NOISE_KINDS = NOISE_DEGRADATIONS
CT_KINDS = CT_DEGRADATIONS
KINDS = DEGRADATIONS
NONE = NO_DEGRADATION  # the images are already degraded (self-supervised training on noisy scans)
AIR_HU = -1000.0


@dataclass(frozen=True)
class Degradation:
    kind: str
    level: tuple[float, ...]
    window: tuple[float, float] = (0.0, 1.0)  # physical intensities at normalised 0 and 1 (HU for CT)
    pixel_mm: float = 1.0  # in-plane pixel size (CT: line integrals in mm)
    ct_views: int = 360  # projections of the low-dose scan

    def __post_init__(self):
        check_degradation(self.kind, self.level, self.window)

    @property
    def whole_image(self) -> bool:
        """True when the model must see whole slices (CT projection), not patches."""
        return self.kind in CT_KINDS

    def sample_levels(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """One level per image: the fixed value, or uniform in the range (log-uniform for photon
        counts, integers for factors and view counts)."""
        if len(self.level) == 1:
            return torch.full((n,), float(self.level[0]))
        lo, hi = float(min(self.level)), float(max(self.level))
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        if self.kind == "lowdose-ct":
            return torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))).float()
        if self.kind in ("downsample", "sparse-view-ct"):
            return torch.floor(lo + u * (hi - lo + 1)).clamp(max=hi).float()
        return (lo + u * (hi - lo)).float()

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None,
                 levels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.float()
        levels = self.sample_levels(x.shape[0], generator) if levels is None else levels.float()
        if self.kind == NONE:
            return x.clone(), levels
        if self.kind in NOISE_KINDS:
            return _noise(self.kind, x, levels, generator), levels
        if self.kind == "downsample":
            return torch.cat([downsample(x[i:i + 1], int(f)) for i, f in enumerate(levels.tolist())]), levels
        lo, hi = self.window
        hu = lo + x * (hi - lo)
        out = torch.empty_like(hu)
        for i, v in enumerate(levels.tolist()):
            out[i:i + 1] = _ct_one(self.kind, hu[i:i + 1], v, self.pixel_mm, self.ct_views, generator)
        return (out - lo) / (hi - lo), levels


def _per_image(levels: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return levels.to(x.device).reshape(-1, *([1] * (x.ndim - 1)))


def _noise(kind: str, x: torch.Tensor, levels: torch.Tensor, generator) -> torch.Tensor:
    s = _per_image(levels, x)
    n = torch.randn(x.shape, generator=generator)
    if kind == "gaussian":
        return x + s * n
    if kind == "rician":
        m = torch.randn(x.shape, generator=generator)
        return torch.sqrt((x + s * n) ** 2 + (s * m) ** 2)
    return x * (1 + s * _correlated(n))


def _correlated(n: torch.Tensor, sigma_px: float = 1.0) -> torch.Tensor:
    """White noise smoothed by a Gaussian of ``sigma_px`` pixels over the spatial axes, back to unit variance."""
    r = int(math.ceil(3 * sigma_px))
    k = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float32) ** 2 / (2 * sigma_px ** 2))
    k = k / k.norm()  # unit energy: white noise keeps unit variance
    dims = n.ndim - 2
    b, c = n.shape[:2]
    y = n.reshape(b * c, 1, *n.shape[2:])
    conv = (F.conv1d, F.conv2d, F.conv3d)[dims - 1]
    for ax in range(dims):
        shape = [1, 1] + [1] * dims
        shape[2 + ax] = 2 * r + 1
        pad = [0] * (2 * dims)
        pad[2 * (dims - 1 - ax)] = pad[2 * (dims - 1 - ax) + 1] = r
        y = conv(F.pad(y, pad, mode="circular"), k.reshape(shape))
    return y.reshape(n.shape)


def downsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Low-resolution copy on the original grid: 2D images are block-averaged in-plane and brought
    back by bicubic interpolation (the classical baseline); volumes (B, C, X, Y, Z) get slices
    ``factor`` times thicker along the last axis, brought back by linear interpolation."""
    if factor == 1:
        return x
    if x.ndim == 4:
        h, w = x.shape[-2:]
        ph, pw = (-h) % factor, (-w) % factor
        xp = F.pad(x, (0, pw, 0, ph), mode="replicate")
        lowres = F.avg_pool2d(xp, factor)
        up = F.interpolate(lowres, scale_factor=factor, mode="bicubic", align_corners=False)
        return up[..., :h, :w]
    if x.ndim == 5:
        z = x.shape[-1]
        pz = (-z) % factor
        xp = F.pad(x, (0, pz, 0, 0, 0, 0), mode="replicate")
        lowres = F.avg_pool3d(xp, (1, 1, factor))
        up = F.interpolate(lowres, size=(*x.shape[2:4], z + pz), mode="trilinear", align_corners=False)
        return up[..., :z]
    raise ValueError(f"downsample needs (B, C, H, W) or (B, C, X, Y, Z), got {tuple(x.shape)}")


def square_slice(hu: torch.Tensor) -> tuple[torch.Tensor, tuple[slice, slice]]:
    """A (B, 1, H, W) slice in HU padded with air to the square the projector needs, and the
    (rows, columns) that crop the result back."""
    if hu.ndim != 4 or hu.shape[1] != 1:
        raise ValueError(f"CT degradations need single-channel 2D slices (B, 1, H, W), got {tuple(hu.shape)}")
    h, w = hu.shape[-2:]
    n = max(h, w)
    top, left = (n - h) // 2, (n - w) // 2
    sq = F.pad(hu, (left, n - w - left, top, n - h - top), value=AIR_HU)
    return sq, (slice(top, top + h), slice(left, left + w))


def _ct_one(kind: str, hu: torch.Tensor, level: float, pixel_mm: float, views: int, generator) -> torch.Tensor:
    """One (1, 1, H, W) slice in HU, padded with air to a square for the projector, cropped back."""
    sq, (rows, cols) = square_slice(hu)
    if kind == "lowdose-ct":
        out = ct.lowdose(sq, level, pixel_mm, views, generator=generator)
    else:
        out = ct.sparse_view(sq, int(level))
    return out[..., rows, cols]
