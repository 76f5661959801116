"""Intensity normalisation: one registry of normalisers for every task, training and inference alike.

A plan chooses one by name in ``preprocessing.normalization`` and gives its parameters in
``preprocessing.normalization_args``; :func:`get_normalizer` builds it. Arrays are channel-first,
``(C, *spatial)``; every result is float32.

| name | used by | forward | inverse |
|---|---|---|---|
| ``uint8`` | classify | pixels / 255 (other dtypes: their full range to [0, 1]) | - |
| ``percentile_clip`` | classify | clip to the image's 0.5-99.5 percentiles, scale to [0, 1] | - |
| ``zscore`` | segment | per channel, mean/std of the nonzero voxels (zero background of skull-stripped or cropped MRI); of all voxels when nearly all are nonzero | - |
| ``rgb`` | segment | per channel, mean/std of all pixels (photographs, fundus images) | - |
| ``ct`` | segment | clip to ``clip`` HU (default [-1024, 3071]), then ``(x - mean) / std`` of the dataset | - |
| ``window`` | enhance | affine: the physical ``window`` [lo, hi] to [0, 1], nothing clipped; values below ``floor`` (default -1024: below air in HU) are scanner padding | yes |
| ``percentile_affine`` | enhance | affine: the image's own 0.5-99.5 percentiles to [0, 1], nothing clipped | after :meth:`~Normalizer.fit` |
| ``none`` | segment | as float32 | yes |

The two percentile normalisers differ on purpose: a classifier sees a clipped [0, 1] image; an
enhancement model's output is mapped back to physical units, so its normalisation must be affine.

Affine normalisers compute on whatever they are given, numpy arrays or torch tensors, so callers
keep their arithmetic (and their bits). Add a normaliser with ``register_normalizer(name, cls)``.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from medcnn.errors import ConfigError, InputError

PERCENTILES = (0.5, 99.5)  # the robust intensity range of one image (both percentile normalisers)
CT_CLIP_HU = (-1024.0, 3071.0)  # the ct normaliser's clip when the plan gives none
CT_FLOOR_HU = -1024.0  # below air: a scanner's padding outside its field of view (e.g. -2000, -3024)


def percentile_range(a: np.ndarray, q: tuple[float, float] = PERCENTILES) -> np.ndarray:
    """The ``q`` percentiles of all values of ``a`` (as numpy returns them)."""
    return np.percentile(a, list(q))


class Normalizer:
    """Maps an image's intensities to the network's units. Subclasses set ``name`` and take their
    parameters (the plan's ``normalization_args``) as keyword arguments."""

    name = ""
    invertible = False
    window: tuple[float, float] | None = None  # fixed physical range mapped to [0, 1], if any
    floor: float | None = None  # physical floor: values below it are padding, not anatomy

    def args(self) -> dict[str, Any]:
        """The parameters, as the plan's ``normalization_args`` would give them."""
        return {}

    def fit(self, a: np.ndarray) -> "Normalizer":
        """The normaliser for image ``a``: ``self``, or one with ``a``'s statistics fixed (so that
        slices of one volume share a scale, and the restored image can be mapped back)."""
        return self

    def forward(self, a, source=None):
        raise NotImplementedError

    def inverse(self, x):
        raise ConfigError(f"normalization {self.name} cannot be undone")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.args()})"


class Uint8(Normalizer):
    name = "uint8"

    def forward(self, a: np.ndarray, source=None) -> np.ndarray:
        if a.dtype == np.uint8:
            return a.astype(np.float32) / 255.0
        # a 16-bit or float image given to an 8-bit model: scale its full range
        return _clip_scale(a.astype(np.float32), source, (0.0, 100.0))


class PercentileClip(Normalizer):
    name = "percentile_clip"

    def forward(self, a: np.ndarray, source=None) -> np.ndarray:
        return _clip_scale(a.astype(np.float32), source, PERCENTILES)


def _clip_scale(a: np.ndarray, source, q: tuple[float, float]) -> np.ndarray:
    """float32 ``a`` clipped to its ``q`` percentiles and scaled to [0, 1] (its min/max when the two
    percentiles meet; zeros for a constant image)."""
    if not np.isfinite(a).all():
        raise InputError("image contains NaN or infinite values", source)
    lo, hi = percentile_range(a, q)
    if hi <= lo:
        lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.zeros_like(a, dtype=np.float32)
    return np.clip((a - lo) / (hi - lo), 0, 1).astype(np.float32)


class ZScore(Normalizer):
    """Per image and channel; ``nonzero``: statistics over the nonzero voxels, unless (almost) all are."""

    name = "zscore"
    nonzero = True

    def forward(self, a: np.ndarray, source=None) -> np.ndarray:
        x = a.astype(np.float32, copy=True)
        for c in range(x.shape[0]):
            ch = x[c]
            vals = ch[ch != 0] if self.nonzero and np.any(ch != 0) and np.mean(ch != 0) < 0.99 else ch
            m, s = float(vals.mean()), float(vals.std())
            x[c] = (ch - m) / max(s, 1e-6)
        return x


class PerChannel(ZScore):
    name = "rgb"
    nonzero = False


class CT(Normalizer):
    name = "ct"

    def __init__(self, clip: list[float] | None = None, mean: float = 0.0, std: float = 1.0):
        self.clip = tuple(float(v) for v in (clip or CT_CLIP_HU))
        if len(self.clip) != 2 or self.clip[1] <= self.clip[0]:
            raise ConfigError(f"preprocessing.normalization_args.clip must be [lo, hi] with lo < hi, got {clip}")
        self.mean, self.std = float(mean), float(std)

    def args(self) -> dict[str, Any]:
        return {"clip": list(self.clip), "mean": self.mean, "std": self.std}

    def forward(self, a: np.ndarray, source=None) -> np.ndarray:
        x = a.astype(np.float32, copy=True)
        np.clip(x, *self.clip, out=x)
        m = np.asarray([self.mean], np.float32).reshape((-1,) + (1,) * (x.ndim - 1))
        s = np.asarray([self.std], np.float32).reshape((-1,) + (1,) * (x.ndim - 1))
        return (x - m) / np.maximum(s, 1e-6)


class Window(Normalizer):
    """Affine: ``window`` [lo, hi] (physical units) to [0, 1]; nothing clipped, so ``inverse``
    gives the physical units back exactly. Numpy in, numpy out (float32); tensors stay tensors."""

    name = "window"
    invertible = True

    def __init__(self, window: list[float] | None = None, floor: float | None = CT_FLOOR_HU):
        if window is None or len(window) != 2 or float(window[1]) <= float(window[0]):
            raise ConfigError(f"preprocessing.normalization_args.window must be [lo, hi] with lo < hi, got {window}")
        self.window = (float(window[0]), float(window[1]))
        self.floor = None if floor is None else float(floor)

    def args(self) -> dict[str, Any]:
        return {"window": list(self.window), "floor": self.floor}

    def forward(self, a, source=None):
        lo, hi = self.window
        x = a if isinstance(a, torch.Tensor) else np.asarray(a, np.float32)
        return (x - lo) / (hi - lo)

    def inverse(self, x):
        lo, hi = self.window
        return x * (hi - lo) + lo


class PercentileAffine(Normalizer):
    """Affine: each image's own 0.5-99.5 percentiles to [0, 1] (MRI and photos: arbitrary units per
    scan). :meth:`fit` fixes them (a :class:`Window`); ``forward`` alone fits to its input."""

    name = "percentile_affine"
    invertible = True

    def fit(self, a: np.ndarray) -> Window:
        lo, hi = (float(v) for v in percentile_range(np.asarray(a, np.float32)))
        return Window([lo, hi if hi > lo else lo + 1.0], floor=None)

    def forward(self, a, source=None):
        return self.fit(a).forward(a)

    def inverse(self, x):
        raise ConfigError("percentile_affine is undone by the normaliser fitted to the image (fit(image).inverse)")


class Identity(Normalizer):
    name = "none"
    invertible = True

    def forward(self, a, source=None):
        return a.float() if isinstance(a, torch.Tensor) else a.astype(np.float32, copy=True)

    def inverse(self, x):
        return x


_REGISTRY: dict[str, type[Normalizer]] = {}


def register_normalizer(name: str, cls: type[Normalizer]) -> None:
    """Make ``cls`` available as ``preprocessing.normalization: NAME`` (its keyword arguments are
    the plan's ``normalization_args``)."""
    _REGISTRY[name] = cls


def normalizer_names() -> list[str]:
    return sorted(_REGISTRY)


def get_normalizer(spec: Any, args: dict[str, Any] | None = None) -> Normalizer:
    """The normaliser of ``spec``: a name (with ``args``), or a plan / its ``preprocessing`` (the
    fields ``normalization`` and ``normalization_args``)."""
    if not isinstance(spec, str):
        pre = getattr(spec, "preprocessing", spec)
        spec, args = pre.normalization, pre.normalization_args
    cls = _REGISTRY.get(spec)
    if cls is None:
        raise ConfigError(f"preprocessing.normalization: unknown {spec!r} (known: {', '.join(normalizer_names())})")
    try:
        return cls(**dict(args or {}))
    except TypeError:
        raise ConfigError(f"preprocessing.normalization_args: {sorted(args or {})} do not fit {spec} "
                          f"(see medcnn.transforms.normalize)") from None


for _cls in (Uint8, PercentileClip, ZScore, PerChannel, CT, Window, PercentileAffine, Identity):
    register_normalizer(_cls.name, _cls)
