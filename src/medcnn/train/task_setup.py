"""The plan's task module and its data loaders: the one place that knows which LightningModule and
which loaders each task (and pretraining pretext) trains with."""
from __future__ import annotations

from pathlib import Path

from medcnn.plan import Plan
from medcnn.utils.files import atomic_write_json


def task_and_loaders(plan: Plan, data, rank: int, world: int, batch: int, info: dict, split_dir: Path | None):
    """(task, train loader, val loader, val cases) for this process (its share of every training
    batch); records the data sizes in ``info["n"]`` and writes the split to ``split_dir`` if given.
    ``val_cases``: whole segmentation cases validated by sliding windows (the time budget probes them)."""
    val_cases: list = []
    split = None
    if plan.task == "segment":
        from medcnn.tasks.segment import SegmentationTask
        from medcnn.train.seg_data import segment_loaders

        train_loader, val_loader, val_cases, split = segment_loaders(plan, data, rank, world)
        info["n"] = {k: len(v) for k, v in split.items()}
        task = SegmentationTask(plan.to_dict())
        task.val_cases = val_cases
    elif plan.restores:
        from medcnn.tasks.restore import RestorationTask
        from medcnn.train.seg_data import restoration_loaders

        train_loader, val_loader, split = restoration_loaders(plan, data, rank, world)
        info["n"] = {"train": len(split["train"]), "unlabelled": len(split["unlabelled"]),
                     "val": len(val_loader.dataset)}
        task = RestorationTask(plan.to_dict())
    elif plan.task == "enhance":
        from medcnn.tasks.enhance import EnhanceTask
        from medcnn.train.enhance_data import enhance_loaders

        train_loader, val_loader, val_pairs, split = enhance_loaders(plan, data, rank, world)
        n_extra = sum((split.get("extra_train") or {}).values())
        info["data_prepare_seconds"] = round(getattr(train_loader.dataset, "prepare_seconds", 0.0), 2)
        info["n"] = {"train_slices": len(train_loader.dataset.slices) - n_extra, "extra_train_slices": n_extra,
                     "val_slices": len(val_pairs),
                     **{f"{k}_sources": len(split[k]) for k in ("train", "val", "test")}}
        task = EnhanceTask(plan.to_dict())
        task.val_pairs = val_pairs
    else:
        from medcnn.train.loaders import array_loader

        info["n"] = {s: int(len(y)) for s, y in data.labels.items()}
        train_loader = array_loader(*data.split("train"), batch_size=plan.batch_size, shuffle=True, seed=plan.seed,
                                    rank=rank, world=world)
        # every process scores the whole validation set: the checkpoint choice is the same everywhere
        val_loader = array_loader(*data.split("val"), batch_size=max(batch, 256), shuffle=False)
        if plan.task == "pretrain":
            from medcnn.tasks.pretrain import ContrastiveTask

            task = ContrastiveTask(plan.to_dict())
        else:
            from medcnn.tasks.classify import ClassificationTask

            task = ClassificationTask(plan.to_dict())
    if split is not None and split_dir is not None:
        atomic_write_json(Path(split_dir) / "split.json", split)
    return task, train_loader, val_loader, val_cases
