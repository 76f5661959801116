"""Training and validation data for enhancement: slices in memory, degraded on the fly.

Each training batch is ``(degraded, clean)`` patches. Noise and resolution models degrade the
patches themselves; the CT models (projection domain) degrade whole slices and crop both at the
same place. Patches get random 90-degree rotations and mirrors (image restoration has no preferred
orientation) and, with ``enhance.zoom``, a random zoom (scans at another pixel size). Validation
uses fixed slices with one fixed, seeded degradation each, so every epoch is scored on the same
noise realisations.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, IterableDataset

from medcnn.data.enhance import EnhanceData, load_enhance, slab_split, source_group, split_sources
from medcnn.errors import InputError
from medcnn.plan import Plan
from medcnn.transforms import ct
from medcnn.transforms.degrade import Degradation, square_slice
from medcnn.transforms.normalize import get_normalizer

MAX_VAL_SLICES = 32


def degradation_for(plan: Plan, pixel_mm: float = 1.0) -> Degradation:
    """The plan's degradation; the CT models work in the physical units of the plan's fixed window."""
    en = plan.enhance
    window = get_normalizer(plan).window or (0.0, 1.0)
    return Degradation(en.degradation, tuple(en.level), window, pixel_mm=pixel_mm, ct_views=en.ct_views)


def split_slices(plan: Plan, data: EnhanceData) -> tuple[dict, dict[str, list[tuple[str, int]]]]:
    """The recorded split (source ids, and how) and the (source id, slice index) pairs of each part."""
    s = plan.enhance.split
    ids = [src.id for src in data.sources]
    split = split_sources(ids, test_fraction=float(s.get("test_fraction", 0.2)),
                          val_fraction=float(s.get("val_fraction", 0.1)), seed=plan.seed,
                          groups=[source_group(src) for src in data.sources])
    return split, {part: part_pairs(plan, data, split, part) for part in ("train", "val", "test")}


def part_pairs(plan: Plan, data: EnhanceData, split: dict, part: str) -> list[tuple[str, int]]:
    """(source id, slice index) of one part of a recorded split (whole sources, or slabs of each)."""
    s = plan.enhance.split
    pairs = []
    for sid in split[part]:
        n = data.n_slices(sid)
        idx = slab_split(n, part, float(s.get("test_fraction", 0.2)), float(s.get("val_fraction", 0.1))) \
            if split["by"] == "slab" else range(n)
        pairs += [(sid, k) for k in idx]
    return pairs


def load_slices(plan: Plan, data: EnhanceData, pairs: list[tuple[str, int]]) -> list[torch.Tensor]:
    """Normalised (C, H, W) slices; blank slices (no contrast) are dropped. Values below the
    normaliser's floor (CT: padding below air) become the floor."""
    norm = get_normalizer(plan)
    out, fitted, floor = [], {}, norm.floor
    for sid, k in pairs:
        if sid not in fitted:  # fitted to the whole source: slices of a volume stay on one scale
            fitted[sid] = norm.fit(data.image(sid).array)
        a = data.slices(sid, plan.preprocessing.channels)[k]
        if floor is not None:
            a = np.maximum(a, floor)
        if float(a.max() - a.min()) <= 0:
            continue
        out.append(torch.from_numpy(fitted[sid].forward(a)))
    return out


def pixel_mm(data: EnhanceData, ids: list[str]) -> float:
    """In-plane pixel size of the first source (CT line integrals are in mm)."""
    return float(data.image(ids[0]).spacing[0]) if ids else 1.0


def _pad_to(x: torch.Tensor, size: list[int]) -> torch.Tensor:
    ph, pw = max(0, size[0] - x.shape[-2]), max(0, size[1] - x.shape[-1])
    if ph or pw:
        mode = "reflect" if ph < x.shape[-2] and pw < x.shape[-1] else "replicate"
        x = F.pad(x[None], (0, pw, 0, ph), mode=mode)[0]
    return x


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """One of the 8 rotations / mirrors of the last two axes."""
    x = torch.rot90(x, k % 4, dims=(-2, -1))
    return x.flip(-1) if k >= 4 else x


class WholeSliceDegrader:
    """The CT degradations of whole training slices, with the projection work done once per slice.

    ``sparse-view-ct`` is deterministic: each (slice, views) result is kept. ``lowdose-ct`` keeps
    per slice the parts of :func:`medcnn.transforms.ct.lowdose_basis` (clean FBP and ``k`` unit-dose
    noise images) and makes every later draw from them, at the dose drawn for it: one projection
    and 1 + k FBPs per slice instead of a projection and an FBP per draw. Evaluation uses the exact
    Poisson simulation. Up to ``max_bytes`` of results are kept; beyond, slices are computed anew."""

    def __init__(self, degradation: Degradation, k: int = 4, max_bytes: int = 4 * 2**30):
        self.d, self.k, self.max_bytes, self.bytes = degradation, k, max_bytes, 0
        self.cache: dict = {}

    def __call__(self, i: int, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(1, 1, H, W) normalised slice number ``i`` -> its degraded copy (normalised)."""
        d = self.d
        lo, hi = d.window
        level = float(d.sample_levels(1, generator)[0])
        parts = self.parts(i, x, level, generator)
        if d.kind == "sparse-view-ct":
            return parts[0]
        return (ct.lowdose_from_basis(*parts, level, generator) - lo) / (hi - lo)

    def prepare(self, slices: list[torch.Tensor], generator: torch.Generator) -> None:
        """Compute every slice's parts now (the levels of a fixed-level model; low-dose parts serve
        all doses), so that training steps, and the time budget's measurement of them, run at the
        speed of the cached draws."""
        d = self.d
        levels = [float(d.level[0])] if d.kind == "lowdose-ct" or len(d.level) == 1 else []
        for i, x in enumerate(slices):
            for level in levels:
                self.parts(i, x[None], level, generator)

    def parts(self, i: int, x: torch.Tensor, level: float, generator: torch.Generator) -> tuple:
        d = self.d
        lo, hi = d.window
        key = (i, int(level)) if d.kind == "sparse-view-ct" else i
        parts = self.cache.get(key)
        if parts is None:
            if d.kind == "sparse-view-ct":
                parts = (d(x, levels=torch.tensor([level]))[0],)
            else:
                sq, (rows, cols) = square_slice(lo + x.float() * (hi - lo))
                clean, noise = ct.lowdose_basis(sq, d.pixel_mm, d.ct_views, self.k, generator)
                parts = (clean[..., rows, cols], noise[..., rows, cols].to(torch.bfloat16))  # float16 overflows (3e5)
            size = sum(p.numel() * p.element_size() for p in parts)
            if self.bytes + size <= self.max_bytes:
                self.cache[key], self.bytes = parts, self.bytes + size
        return parts


class EnhancePatches(IterableDataset):
    def __init__(self, slices: list[torch.Tensor], degradation: Degradation, patch: list[int], batch_size: int,
                 n_batches: int, seed: int = 0, weights: np.ndarray | None = None, rank: int | None = None,
                 zoom: tuple[float, float] = (1.0, 1.0)):
        self.slices, self.degradation, self.patch = slices, degradation, list(patch)
        self.zoom = (float(zoom[0]), float(zoom[1]))  # enhance.zoom (not for the whole-slice CT models)
        self.weights = None if weights is None else np.asarray(weights, np.float64) / np.sum(weights)
        self.batch_size, self.n_batches, self.seed, self.epoch = batch_size, n_batches, seed, 0
        self.rank = rank  # data-parallel: each process draws its own stream (and its share of the batch)
        self.whole = WholeSliceDegrader(degradation) if degradation.whole_image else None

    def __len__(self) -> int:
        return self.n_batches

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def prepare(self) -> float:
        """CT models: compute every training slice's projection parts before training (see
        :class:`WholeSliceDegrader`); the seconds it took (part of the training time)."""
        import time

        t0 = time.perf_counter()
        if self.whole is not None:
            gen = torch.Generator().manual_seed(self.seed + 7919)
            self.whole.prepare([_pad_to(s, self.patch) for s in self.slices], gen)
        self.prepare_seconds = time.perf_counter() - t0
        return self.prepare_seconds

    def _crop(self, x: torch.Tensor, rng: np.random.Generator, size: list[int] | None = None) -> tuple[int, int]:
        h, w = x.shape[-2:]
        ph, pw = size or self.patch
        return int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))

    def _zoomed(self, x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """A patch-sized view of slice ``x`` at a zoom drawn from ``self.zoom``: a window of
        patch / zoom pixels, resized to the patch (bicubic; antialiased when it shrinks)."""
        lo, hi = self.zoom
        z = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        size = [max(4, round(p / z)) for p in self.patch]
        x = _pad_to(x, size)
        top, left = self._crop(x, rng, size)
        window = x[None, :, top:top + size[0], left:left + size[1]]
        return F.interpolate(window, size=self.patch, mode="bicubic", align_corners=False,
                             antialias=size[0] > self.patch[0])[0]

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch] + ([] if self.rank is None else [self.rank]))
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        ph, pw = self.patch
        whole = self.degradation.whole_image
        for _ in range(self.n_batches):
            clean, degraded = [], []
            picks = rng.integers(0, len(self.slices), self.batch_size) if self.weights is None else \
                rng.choice(len(self.slices), self.batch_size, p=self.weights)
            for i in picks:
                if self.zoom != (1.0, 1.0):
                    clean.append(self._zoomed(self.slices[i], rng))
                    continue
                x = _pad_to(self.slices[i], self.patch)
                top, left = self._crop(x, rng)
                if whole:  # CT: degrade the whole slice, then crop both
                    y = self.whole(int(i), x[None], gen)
                    degraded.append(y[0, :, top:top + ph, left:left + pw])
                clean.append(x[:, top:top + ph, left:left + pw])
            c = torch.stack(clean)
            d = torch.stack(degraded) if whole else self.degradation(c, gen)[0]
            # 8 rotations/mirrors of square patches; rectangular ones keep their shape (4)
            k = rng.integers(0, 8, len(c)) if ph == pw else 2 * rng.integers(0, 4, len(c))
            yield (torch.stack([dihedral(v, int(j)) for v, j in zip(d, k)]),
                   torch.stack([dihedral(v, int(j)) for v, j in zip(c, k)]))


def val_pairs(slices: list[torch.Tensor], degradation: Degradation, seed: int = 0,
              limit: int = MAX_VAL_SLICES) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
    """(degraded, clean, level) for up to ``limit`` evenly spread slices, one seeded degradation each."""
    idx = np.unique(np.linspace(0, len(slices) - 1, min(limit, len(slices))).astype(int)) if slices else []
    gen = torch.Generator().manual_seed(seed + 12345)
    out = []
    for i in idx:
        y, lv = degradation(slices[i][None], gen)
        out.append((y[0], slices[i], float(lv[0])))
    return out


def extra_slices(plan: Plan) -> tuple[list[torch.Tensor], dict[str, int]]:
    """All slices of ``enhance.extra_train`` (training only), and how many came from each path."""
    out, record = [], {}
    for path in plan.enhance.extra_train:
        ed = load_enhance(path)
        s = load_slices(plan, ed, [(src.id, k) for src in ed.sources for k in range(ed.n_slices(src.id))])
        if not s:
            raise InputError("enhance.extra_train: no slices with any contrast", path)
        out += s
        record[str(path)] = len(s)
    return out, record


def enhance_loaders(plan: Plan, data: EnhanceData, rank: int = 0, world: int = 1):
    """Train loader (patches), val loader (indices into the task's val pairs), val pairs, split record.
    With ``world`` > 1 processes, each draws ``batch_size / world`` patches per step from its own stream."""
    split, parts = split_slices(plan, data)
    train = load_slices(plan, data, parts["train"])
    val = load_slices(plan, data, parts["val"])
    if not train:
        raise InputError("no training slices with any contrast", data.root)
    deg = degradation_for(plan, pixel_mm(data, split["train"]))
    en = plan.enhance
    extra, extra_record = extra_slices(plan)
    weights = None
    if extra:
        weights = np.r_[np.full(len(train), (1 - en.extra_share) / len(train)),
                        np.full(len(extra), en.extra_share / len(extra))]
    n_batches = max(1, en.patches_per_epoch // plan.batch_size)
    train_loader = DataLoader(EnhancePatches(train + extra, deg, en.patch_size, plan.batch_size // world, n_batches,
                                             plan.seed, weights=weights, rank=rank if world > 1 else None,
                                             zoom=tuple(en.zoom)),
                              batch_size=None, num_workers=0)
    if deg.whole_image:
        import logging

        seconds = train_loader.dataset.prepare()
        logging.getLogger("medcnn.train").info("CT projections of %d training slices prepared in %.1f s",
                                               len(train_loader.dataset.slices), seconds)
    pairs = val_pairs(val, deg, plan.seed)
    val_loader = DataLoader(list(range(len(pairs))), batch_size=None, shuffle=False)
    record = {**{k: split[k] for k in ("train", "val", "test")}, "by": split["by"], "extra_train": extra_record,
              "slices": {k: [f"{sid}#{i}" for sid, i in v] for k, v in parts.items()} if split["by"] == "slab" else None}
    return train_loader, val_loader, pairs, record
