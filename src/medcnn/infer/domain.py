"""Does an input look like the data the model was trained on? A classifier's answer for each input.

Two kinds of evidence, with different consequences:

- **Foreign** (the prediction is withheld unless the user allows it): the DICOM header names
  another modality than the training data's (CT into an ultrasound model), or the image is in
  colour while the model learnt from greyscale (a fundus photo into an X-ray model), or the
  reverse. These need no statistics: the model cannot be asked about such an input.
- **Unusual** (the prediction is given, with a warning): the network's own view of the input is far
  from every training class — the Mahalanobis distance of its penultimate-layer features to the
  nearest class mean under the training covariance (Lee et al., NeurIPS 2018) is above the 99th
  percentile of the validation images' — or its intensity statistics fall outside the training
  images' range. This catches look-alike inputs of the same size and channel count (a chest
  X-ray into a breast-ultrasound model), which no header check can.

The statistics are fitted once per run and checkpoint (:func:`fit_domain`, after training, or by
``medcnn evaluate`` for older runs) and kept in RUN/domain.npz; the threshold is set on validation
images only. Neither check depends on DICOM headers or image size, so MedMNIST arrays are covered.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

FEATURE_QUANTILE = 0.99  # validation images above this distance quantile are called unusual
MAX_FIT_IMAGES = 5000  # training images the feature statistics are fitted on (evenly spaced subsample)
COLOUR_THRESHOLD = 0.08  # mean channel spread (0-1 scale) above which an image counts as colour
INTENSITY_MARGIN = 0.5  # intensity range of the training images, widened by this share on each side

# DICOM Modality codes and the words a training modality description uses for them
MODALITY_WORDS = {
    "CT": ("ct",), "MR": ("mr", "mri"), "US": ("ultrasound", "us"), "CR": ("x-ray", "xray", "radiograph"),
    "DX": ("x-ray", "xray", "radiograph"), "MG": ("mammogra",), "OP": ("fundus", "photo"), "XC": ("photo", "dermatoscop"),
    "PT": ("pet",), "NM": ("nuclear", "spect"), "OCT": ("oct",), "SM": ("microscop", "patholog"),
}

FOREIGN, UNUSUAL, IN_DOMAIN = "foreign", "unusual", "in-domain"


def feature_layer(net: torch.nn.Module) -> torch.nn.Module:
    """The last layer with weights of a classifier (its Linear head, or a 1x1-conv head): its input
    is the penultimate representation."""
    last = None
    for m in net.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)):
            last = m
    if last is None:
        raise ValueError("the network has no Linear or convolution layer to read features from")
    return last


def features(net: torch.nn.Module, images: np.ndarray | torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """(N, D) penultimate features of an (N, C, *spatial) batch (uint8 or float in [0, 1]); spatial
    inputs of a conv head are averaged over space."""
    grabbed: list[torch.Tensor] = []
    hook = feature_layer(net).register_forward_hook(
        lambda mod, inp, out: grabbed.append(inp[0].flatten(2).mean(2) if inp[0].ndim > 2 else inp[0]))
    net.eval()
    x_all = torch.as_tensor(images)
    try:
        with torch.inference_mode():
            for i in range(0, len(x_all), batch_size):
                x = x_all[i:i + batch_size]
                net((x.float() / 255 if x.dtype == torch.uint8 else x.float()).contiguous())
    finally:
        hook.remove()
    return torch.cat(grabbed).float().numpy() if grabbed else np.zeros((0, 0), np.float32)


def colourfulness(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """Per image of (N, C, *spatial) in [0, 1] (or uint8): mean spread between the channels (0 for grey)."""
    x = torch.as_tensor(x)
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    if x.shape[1] < 3:
        return np.zeros(len(x))
    return (x[:, :3].amax(1) - x[:, :3].amin(1)).flatten(1).mean(1).numpy()


def image_colourfulness(array: np.ndarray) -> float:
    """Colourfulness of an image as read, (C, *spatial) in any intensity range."""
    if array.shape[0] < 3:
        return 0.0
    a = np.asarray(array[:3], dtype=np.float32)
    span = float(a.max() - a.min())
    return float((a.max(0) - a.min(0)).mean() / span) if span > 0 else 0.0


def intensity_stats(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """(N, 2) per-image mean and standard deviation of the network input in [0, 1]."""
    x = torch.as_tensor(x)
    x = (x.float() / 255 if x.dtype == torch.uint8 else x.float()).flatten(1)
    return torch.stack([x.mean(1), x.std(1)], 1).numpy()


@dataclass
class DomainModel:
    """What a run knows about its training inputs (RUN/domain.npz)."""

    means: np.ndarray  # (K, D) class means of the training features (K = 1 for multi-label)
    precision: np.ndarray  # (D, D) inverse of the shared, shrunk covariance
    threshold: float  # the FEATURE_QUANTILE of the validation distances
    intensity_range: np.ndarray  # (2, 2): [low, high] of per-image mean and std, widened
    colour: float  # median colourfulness of the training inputs
    modality: str = ""  # the training data's modality, as its fingerprint describes it
    checkpoint: str = "best"
    val_distances: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def distance(self, feats: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each feature row to the nearest class mean."""
        d = feats[:, None, :] - self.means[None]  # (N, K, D)
        return np.sqrt(np.einsum("nkd,de,nke->nk", d, self.precision, d).min(1).clip(min=0))

    # ---- storage -------------------------------------------------------------------------
    def save(self, path) -> None:
        from medcnn.utils.files import atomic_path

        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, means=self.means, precision=self.precision, threshold=self.threshold,
                     intensity_range=self.intensity_range, colour=self.colour, modality=np.str_(self.modality),
                     checkpoint=np.str_(self.checkpoint), val_distances=self.val_distances)

    @classmethod
    def load(cls, path) -> "DomainModel":
        with np.load(path, allow_pickle=False) as z:
            return cls(means=z["means"], precision=z["precision"], threshold=float(z["threshold"]),
                       intensity_range=z["intensity_range"], colour=float(z["colour"]), modality=str(z["modality"]),
                       checkpoint=str(z["checkpoint"]), val_distances=z["val_distances"])


def fit_domain(net: torch.nn.Module, train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray,
               label_type: str, modality: str = "", checkpoint: str = "best") -> DomainModel:
    """Fit the statistics on (a subsample of) the training images; the distance threshold on validation."""
    from sklearn.covariance import LedoitWolf

    keep = np.unique(np.linspace(0, len(train_x) - 1, min(len(train_x), MAX_FIT_IMAGES)).astype(int))
    x, y = train_x[keep], train_y[keep]
    f = features(net, x).astype(np.float64)
    groups = [np.ones(len(f), bool)] if label_type == "multilabel" else [y == k for k in np.unique(y)]
    means = np.stack([f[g].mean(0) for g in groups])
    centred = np.concatenate([f[g] - f[g].mean(0) for g in groups])
    precision = LedoitWolf(assume_centered=True).fit(centred).precision_
    model = DomainModel(means=means, precision=precision, threshold=np.inf, intensity_range=np.zeros((2, 2)),
                        colour=float(np.median(colourfulness(x))), modality=modality, checkpoint=checkpoint)
    val_d = model.distance(features(net, val_x).astype(np.float64))
    model.threshold = float(np.quantile(val_d, FEATURE_QUANTILE))
    model.val_distances = np.sort(val_d)
    stats = intensity_stats(x)
    lo, hi = np.quantile(stats, 0.005, axis=0), np.quantile(stats, 0.995, axis=0)
    model.intensity_range = np.stack([lo - INTENSITY_MARGIN * (hi - lo), hi + INTENSITY_MARGIN * (hi - lo)])
    return model


def unusual_share(model: DomainModel, net: torch.nn.Module, images: np.ndarray) -> float:
    """The share of an in-memory batch (network inputs, no headers) that the statistical checks call
    unusual: features beyond the threshold, or intensity outside the training range."""
    stats = intensity_stats(images)
    lo, hi = model.intensity_range
    outside = ((stats < lo) | (stats > hi)).any(1)
    far = model.distance(features(net, images).astype(np.float64)) > model.threshold
    return float((outside | far).mean())


def header_reasons(meta: dict[str, Any], modality: str) -> list[str]:
    """Foreign-input reasons readable from the file alone: the DICOM modality."""
    code = str(meta.get("modality") or "").upper()
    words = MODALITY_WORDS.get(code)
    text = modality.lower()
    if not code or not words or not text or "unknown" in text:
        return []
    known = [c for c, ws in MODALITY_WORDS.items() if any(_has_word(text, w) for w in ws)]
    if known and code not in known:
        return [f"DICOM modality {code}, but the model was trained on {modality}"]
    return []


def _has_word(text: str, word: str) -> bool:
    import re

    return re.search(rf"(?<![a-z]){re.escape(word)}", text) is not None


def check(model: DomainModel | None, net: torch.nn.Module | None, x: torch.Tensor, colour_in: float,
          meta: dict[str, Any], modality: str) -> dict[str, Any]:
    """The verdict on one preprocessed input ``x`` (C, *spatial): ``{"verdict": in-domain | unusual |
    foreign, "reasons": [...], "distance", "threshold"}``. ``colour_in``: the colourfulness of the image
    as read (before any conversion to the model's channels)."""
    reasons = header_reasons(meta, modality)
    foreign = bool(reasons)
    unusual: list[str] = []
    out: dict[str, Any] = {}
    if model is not None:
        if colour_in > COLOUR_THRESHOLD and model.colour < COLOUR_THRESHOLD / 4:
            reasons.append(f"a colour image (channel spread {colour_in:.2f}); the model was trained on greyscale")
            foreign = True
        elif colour_in < COLOUR_THRESHOLD / 4 and model.colour > COLOUR_THRESHOLD:
            reasons.append("a greyscale image; the model was trained on colour images")
            foreign = True
        stats = intensity_stats(x[None])[0]
        lo, hi = model.intensity_range
        if (stats < lo).any() or (stats > hi).any():
            unusual.append(f"intensity mean/std {stats[0]:.2f}/{stats[1]:.2f} outside the training range "
                           f"{lo[0]:.2f}-{hi[0]:.2f} / {lo[1]:.2f}-{hi[1]:.2f}")
        if net is not None:
            dist = float(model.distance(features(net, x[None]).astype(np.float64))[0])
            out.update(distance=round(dist, 3), threshold=round(model.threshold, 3))
            if dist > model.threshold:
                unusual.append(f"features far from the training data (distance {dist:.1f} > {model.threshold:.1f}, "
                               f"the {FEATURE_QUANTILE:.0%} quantile of validation images)")
    else:
        out["note"] = "no domain statistics in this run (run `medcnn evaluate` to fit them)"
    verdict = FOREIGN if foreign else UNUSUAL if unusual else IN_DOMAIN
    return {"verdict": verdict, "reasons": reasons + unusual, **out}
