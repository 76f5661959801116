"""Training inputs of a segmentation run: the seeded case split, prepared cases, patch loader."""
from __future__ import annotations

import logging
import time

import numpy as np
from torch.utils.data import DataLoader

from medcnn.data.seg_prepare import PreparedCase, prepare_case
from medcnn.data.segmentation import Case, SegmentationData, case_group, read_case, split_cases
from medcnn.plan import Plan
from medcnn.train.patches import crop, patch_loader

log = logging.getLogger("medcnn.train")


def case_split(plan: Plan, data: SegmentationData) -> dict[str, list[str]]:
    s = plan.segment.split
    ids = [c.id for c in data.cases]
    groups = [case_group(c) for c in data.cases]
    split = split_cases(ids, test_fraction=float(s.get("test_fraction", 0.2)), val_fraction=float(s.get("val_fraction", 0.2)),
                        folds=int(s.get("folds", 5)), fold=s.get("fold"), seed=int(s.get("seed", 0)), groups=groups)
    if groups != ids:  # cases of one patient: the split file says which (hashed, see medcnn.data.groups)
        split["groups"] = {i: g for i, g in zip(ids, groups) if g != i}
    if data.test_cases:  # the layout's own test set (DRIVE test/)
        split["test"] = sorted(split["test"] + [c.id for c in data.test_cases])
    frac = float(s.get("train_fraction", 1.0))  # checked by Plan.validate
    if frac < 1.0:  # val and test stay as they are: only the labelled training cases shrink
        n = max(1, int(round(len(split["train"]) * frac)))
        keep = np.random.default_rng(int(s.get("subset_seed", plan.seed))).choice(len(split["train"]), n, replace=False)
        split["train"] = sorted(split["train"][i] for i in keep)
    return split


def cases_of(data: SegmentationData, ids: list[str]) -> list[Case]:
    by_id = {c.id: c for c in data.cases + data.test_cases}
    return [by_id[i] for i in ids]


def prepare_cases(cases: list[Case], data: SegmentationData, plan: Plan) -> list[PreparedCase]:
    out = []
    for c in cases:
        image, label, fov = read_case(c, data.labels)
        out.append(prepare_case(c.id, image, label, fov, plan))
    return out


def segment_loaders(plan: Plan, data: SegmentationData, rank: int = 0, world: int = 1):
    """(train patch loader, val index loader, prepared val cases, split); with ``world`` > 1
    processes, this one's slice of each global batch."""
    t0 = time.perf_counter()
    split = case_split(plan, data)
    train_cases = prepare_cases(cases_of(data, split["train"]), data, plan)
    val_cases = prepare_cases(cases_of(data, split["val"]), data, plan)
    log.info("prepared %d train / %d val cases in %.1f s", len(train_cases), len(val_cases), time.perf_counter() - t0)
    seg = plan.segment
    n_batches = max(1, seg.patches_per_epoch // plan.batch_size)
    train = patch_loader(train_cases, seg.patch_size, plan.batch_size, n_batches, seg.fg_oversample, plan.seed,
                          rank, world)
    val = DataLoader(list(range(len(val_cases))), batch_size=None, shuffle=False, num_workers=0)
    return train, val, val_cases, split


def image_cases(cases: list[Case], data: SegmentationData, plan: Plan) -> list[PreparedCase]:
    """Prepared images without their labels (an all-background map, so patches sample uniformly)."""
    import torch

    out = []
    for c in cases:
        image, _, _ = read_case(Case(c.id, c.images), data.labels)
        pc = prepare_case(c.id, image, None, None, plan)
        pc.label = torch.zeros((1, *pc.image.shape[1:]), dtype=torch.uint8)
        out.append(pc)
    return out


def restoration_loaders(plan: Plan, data: SegmentationData, rank: int = 0, world: int = 1):
    """Restoration pretraining (``tasks.pretrain.restoration``): patches of the images of the training cases and
    of the unlabelled cases (MSD imagesTs), never of the validation or test cases; one fixed centre
    patch per validation case for the checkpoint choice. Returns (train loader, val loader, split)."""
    import torch

    t0 = time.perf_counter()
    split = case_split(plan, data)
    split["unlabelled"] = [c.id for c in data.unlabelled]
    train_cases = image_cases(cases_of(data, split["train"]) + list(data.unlabelled), data, plan)
    patch = list(plan.segment.patch_size)
    val = [crop(c.image, [(s - p) // 2 for s, p in zip(c.image.shape[1:], patch)], patch)
           for c in image_cases(cases_of(data, split["val"]), data, plan)]
    log.info("prepared %d train + %d unlabelled images, %d val patches in %.1f s", len(split["train"]),
             len(split["unlabelled"]), len(val), time.perf_counter() - t0)
    n_batches = max(1, plan.segment.patches_per_epoch // plan.batch_size)
    train = patch_loader(train_cases, patch, plan.batch_size, n_batches, 0.0, plan.seed, rank, world)
    val_x = torch.stack(val) if val else torch.zeros((0, plan.preprocessing.channels, *patch))
    val_loader = DataLoader(torch.utils.data.TensorDataset(val_x), batch_size=plan.batch_size, shuffle=False)
    return train, val_loader, split
