"""Training inputs of a segmentation run: the seeded case split, prepared cases, patch loader."""
from __future__ import annotations

import logging
import time

from torch.utils.data import DataLoader

from medcnn.data.seg_prepare import PreparedCase, prepare_case
from medcnn.data.segmentation import Case, SegmentationData, read_case, split_cases
from medcnn.plan import Plan
from medcnn.train.patches import patch_loader

log = logging.getLogger("medcnn.train")


def case_split(plan: Plan, data: SegmentationData) -> dict[str, list[str]]:
    s = plan.segment.split
    ids = [c.id for c in data.cases]
    split = split_cases(ids, test_fraction=float(s.get("test_fraction", 0.2)), val_fraction=float(s.get("val_fraction", 0.2)),
                        folds=int(s.get("folds", 5)), fold=s.get("fold"), seed=int(s.get("seed", 0)))
    if data.test_cases:  # the layout's own test set (DRIVE test/)
        split["test"] = sorted(split["test"] + [c.id for c in data.test_cases])
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
