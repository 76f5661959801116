"""Does an input look like the data the model was trained on? A classifier's answer for each input.

Two kinds of evidence, with different consequences:

- **Foreign** (the prediction is withheld unless the user allows it): the DICOM header names
  another modality than the training data's (CT into an ultrasound model), or the image is in
  colour while the model learnt from greyscale (a fundus photo into an X-ray model), or the
  reverse. These need no statistics: the model cannot be asked about such an input.
- **Unusual** (the prediction is given, with a warning): the network's own view of the input is far
  from the training images'. At every stage of the network (the stem and each block group) the
  per-channel mean and spread of its feature maps, and the penultimate features, each get a
  Gaussian fitted on training images (shrunk covariance, Ledoit-Wolf); an input's Mahalanobis
  distances to them, each divided by its median over the validation images, are summed, and a sum
  above the validation images' conformal 99th percentile is unusual (Lee et al., NeurIPS 2018, with
  their feature ensemble; the early stages see texture - ultrasound speckle, X-ray - that the last
  layer no longer separates). So is intensity outside the training images' range. This catches
  look-alike inputs of the same size and channel count, which no header check can.

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


def _has_conv(m: torch.nn.Module) -> bool:
    return any(isinstance(x, (torch.nn.Conv2d, torch.nn.Conv3d)) for x in m.modules())


def stage_modules(net: torch.nn.Module) -> list[torch.nn.Module]:
    """The stages of a classifier's trunk: the convolutional siblings of its head (a MONAI ResNet:
    conv1, layer1..layer4), looking one level up or into a single trunk container when the head's
    own container holds fewer than two (DenseNet: its ``features``)."""
    head = feature_layer(net)
    parent = {child: mod for mod in net.modules() for child in mod.children()}
    node = parent.get(head)
    while node is not None:
        stages = [c for c in node.children() if _has_conv(c) and head not in set(c.modules())]
        if len(stages) == 1:
            stages = [c for c in stages[0].children() if _has_conv(c)]
        if len(stages) >= 2:
            return stages
        node = parent.get(node)
    return []


def features(net: torch.nn.Module, images: np.ndarray | torch.Tensor, batch_size: int | None = None) -> dict[str, np.ndarray]:
    """{name: (N, D)} of an (N, C, *spatial) batch (uint8 or float in [0, 1]): the per-channel mean
    and standard deviation over space of every stage's output, and the penultimate features."""
    grabbed: dict[str, list[torch.Tensor]] = {}

    def keep(name):
        def hook(mod, inp, out):
            t = out.detach().float()
            if t.ndim > 2 and t[0, 0].numel() > 1:
                grabbed.setdefault(f"{name}:mean", []).append(t.flatten(2).mean(2))
                grabbed.setdefault(f"{name}:std", []).append(t.flatten(2).std(2))
        return hook

    def penultimate(mod, inp, out):
        t = inp[0].detach().float()
        grabbed.setdefault("penultimate", []).append(t.flatten(2).mean(2) if t.ndim > 2 else t)

    hooks = [m.register_forward_hook(keep(f"stage{i}")) for i, m in enumerate(stage_modules(net))]
    hooks.append(feature_layer(net).register_forward_hook(penultimate))
    net.eval()
    x_all = torch.as_tensor(images)
    batch_size = batch_size or (256 if x_all.ndim == 4 else 8)  # 3D stage outputs are large
    # 2D batches channels-last, as the predictors' weights are: the same features, 18 % less time
    layout = torch.channels_last if x_all.ndim == 4 else torch.contiguous_format
    try:
        with torch.inference_mode():
            for i in range(0, len(x_all), batch_size):
                x = x_all[i:i + batch_size]
                net((x.float() / 255 if x.dtype == torch.uint8 else x.float()).contiguous(memory_format=layout))
    finally:
        for h in hooks:
            h.remove()
    return {k: torch.cat(v).numpy().astype(np.float64) for k, v in grabbed.items()}


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
class Gaussian:
    """One feature group's training distribution."""

    mean: np.ndarray  # (D,)
    precision: np.ndarray  # (D, D): inverse of the shrunk covariance
    scale: float = 1.0  # the median distance of the validation images

    def distance(self, f: np.ndarray) -> np.ndarray:
        d = f - self.mean
        return np.sqrt(np.einsum("nd,de,ne->n", d, self.precision, d).clip(min=0))


@dataclass
class DomainModel:
    """What a run knows about its training inputs (RUN/domain.npz)."""

    groups: dict[str, Gaussian]  # feature group (medcnn.infer.domain.features) -> its Gaussian
    threshold: float  # the conformal FEATURE_QUANTILE of the validation images' summed scaled distances
    intensity_range: np.ndarray  # (2, 2): [low, high] of per-image mean and std, widened
    colour: float  # median colourfulness of the training inputs
    modality: str = ""  # the training data's modality, as its fingerprint describes it
    checkpoint: str = "best"
    val_distances: np.ndarray = field(default_factory=lambda: np.zeros(0))

    FORMAT = 3  # 3: precision matrices stored as float32 upper triangles; 2: full float64 matrices
    READS = (2, 3)

    def distance(self, feats: dict[str, np.ndarray]) -> np.ndarray:
        """Each input's distance to the training data: the sum over feature groups of its Mahalanobis
        distance divided by the validation median (about 1 per group for a typical input)."""
        return sum(g.distance(feats[k]) / g.scale for k, g in self.groups.items())

    # ---- storage -------------------------------------------------------------------------
    def save(self, path) -> None:
        from medcnn.utils.files import atomic_path

        arrays = {}
        for i, (k, g) in enumerate(self.groups.items()):
            # a precision matrix is symmetric: its upper triangle in float32 is a quarter of the
            # float64 matrix (the zoo ships these files), and distances move by about 1e-6
            upper = g.precision[np.triu_indices(len(g.mean))].astype(np.float32)
            arrays.update({f"name_{i}": np.str_(k), f"mean_{i}": g.mean.astype(np.float32), f"precision_{i}": upper,
                           f"scale_{i}": g.scale})
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, format=self.FORMAT, groups=len(self.groups), threshold=self.threshold,
                     intensity_range=self.intensity_range, colour=self.colour, modality=np.str_(self.modality),
                     checkpoint=np.str_(self.checkpoint), val_distances=self.val_distances, **arrays)

    @classmethod
    def load(cls, path) -> "DomainModel | None":
        """The saved statistics; None for a file of another format (refit them with `medcnn evaluate`)."""
        with np.load(path, allow_pickle=False) as z:
            if "format" not in z.files or int(z["format"]) not in cls.READS:
                return None
            groups = {str(z[f"name_{i}"]): Gaussian(z[f"mean_{i}"].astype(np.float64), _symmetric(z[f"precision_{i}"]),
                                                    float(z[f"scale_{i}"]))
                      for i in range(int(z["groups"]))}
            return cls(groups=groups, threshold=float(z["threshold"]), intensity_range=z["intensity_range"],
                       colour=float(z["colour"]), modality=str(z["modality"]), checkpoint=str(z["checkpoint"]),
                       val_distances=z["val_distances"])


def _symmetric(stored: np.ndarray) -> np.ndarray:
    """A float64 (D, D) precision matrix from its stored form: the full matrix, or its upper triangle."""
    if stored.ndim == 2:
        return stored.astype(np.float64)
    d = int(round((np.sqrt(8 * len(stored) + 1) - 1) / 2))
    full = np.zeros((d, d))
    full[np.triu_indices(d)] = stored
    return full + np.triu(full, 1).T


def fit_domain(net: torch.nn.Module, train_x: np.ndarray, val_x: np.ndarray, modality: str = "",
               checkpoint: str = "best") -> DomainModel:
    """Fit the statistics on (a subsample of) the training images; scales and threshold on validation."""
    from sklearn.covariance import LedoitWolf

    keep = np.unique(np.linspace(0, len(train_x) - 1, min(len(train_x), MAX_FIT_IMAGES)).astype(int))
    x = train_x[keep]
    groups = {}
    for k, f in features(net, x).items():
        lw = LedoitWolf().fit(f)
        groups[k] = Gaussian(lw.location_, lw.precision_)
    val = features(net, val_x)
    for k, g in groups.items():
        g.scale = float(np.median(g.distance(val[k]))) or 1.0
    model = DomainModel(groups=groups, threshold=np.inf, intensity_range=np.zeros((2, 2)),
                        colour=float(np.median(colourfulness(x))), modality=modality, checkpoint=checkpoint)
    val_d = model.distance(val)
    model.threshold = conformal_threshold(val_d, FEATURE_QUANTILE)
    model.val_distances = np.sort(val_d)
    stats = intensity_stats(x)
    lo, hi = np.quantile(stats, 0.005, axis=0), np.quantile(stats, 0.995, axis=0)
    model.intensity_range = np.stack([lo - INTENSITY_MARGIN * (hi - lo), hi + INTENSITY_MARGIN * (hi - lo)])
    return model


def conformal_threshold(scores: np.ndarray, q: float = FEATURE_QUANTILE) -> float:
    """The ceil((n + 1) q)-th smallest of n validation scores (the largest when that exceeds n): a
    new in-distribution image exceeds it with probability at most 1 - q, or 1 / (n + 1) when n is
    too small for q (split-conformal; exchangeable images). The plain sample quantile has no such
    bound: at q = 0.99 of 78 validation images it interpolates between the two largest and is
    exceeded about 2.2 % of the time."""
    s = np.sort(np.asarray(scores, dtype=np.float64))
    k = min(int(np.ceil((len(s) + 1) * q)), len(s))
    return float(s[k - 1])


def unusual_share(model: DomainModel, net: torch.nn.Module, images: np.ndarray) -> float:
    """The share of an in-memory batch (network inputs, no headers) that the statistical checks call
    unusual: features beyond the threshold, or intensity outside the training range."""
    stats = intensity_stats(images)
    lo, hi = model.intensity_range
    outside = ((stats < lo) | (stats > hi)).any(1)
    far = model.distance(features(net, images)) > model.threshold
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
            dist = float(model.distance(features(net, x[None]))[0])
            out.update(distance=round(dist, 3), threshold=round(model.threshold, 3))
            if dist > model.threshold:
                unusual.append(f"features far from the training data (score {dist:.1f} > {model.threshold:.1f}, "
                               f"the conformal {FEATURE_QUANTILE:.0%} quantile of validation images)")
    else:
        out["note"] = "no domain statistics in this run (run `medcnn evaluate` to fit them)"
    verdict = FOREIGN if foreign else UNUSUAL if unusual else IN_DOMAIN
    return {"verdict": verdict, "reasons": reasons + unusual, **out}
