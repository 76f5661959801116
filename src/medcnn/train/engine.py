"""The training engine: a run folder, a Lightning Trainer, and the checkpoint chosen on validation.

Run folder layout::

    plan.yaml            the resolved plan (reproduce with `medcnn train DATA --plan plan.yaml`)
    run.json             versions, command, data source, timings, best epoch
    split.csv            the file list of each split (folder / CSV datasets)
    checkpoints/best.ckpt, checkpoints/last.ckpt   weights + plain-data plan (weights_only-safe)
    metrics.json         per epoch: train loss, val loss/AUC/ACC, lr, seconds
    learning_curve.png, train.log, logs/metrics.csv
"""
from __future__ import annotations

import csv
import logging
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

from medcnn.data.classification import ClassificationData
from medcnn.errors import RunFolderError
from medcnn.plan import Plan
from medcnn.utils.files import atomic_path, atomic_write_json

log = logging.getLogger("medcnn.train")


def prepare_run_dir(run_dir: Path, overwrite: bool) -> Path:
    run_dir = Path(run_dir)
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise RunFolderError("run folder exists and is not empty; choose another --out or pass --overwrite", run_dir)
        if not (run_dir / "plan.yaml").exists() and not (run_dir / "run.json").exists():
            raise RunFolderError("refusing to overwrite a folder that is not a medcnn run", run_dir)
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def resolve_precision(precision: str, spatial_dims: int = 2, task: str = "classify") -> str:
    """"auto": bf16 autocast on GPUs and on CPUs with AVX-512 bf16, except 3D classification on
    CPU: with torch 2.13, bf16 3D convolutions turned the AdrenalMNIST3D loss into NaN within two
    epochs while fp32 trained normally. 3D segmentation (DynUNet, instance norm) trained without
    NaN in bf16 on MSD Hippocampus and its steps are 2.9x faster (0.69 vs 2.02 s per batch of
    6 x 40x56x40, bench/results/EXPERIMENTS_segment.md), so it uses bf16."""
    import torch

    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    if check is None or not check():
        return "32"
    return "32" if (spatial_dims == 3 and task == "classify") else "bf16-mixed"


def train(plan: Plan, data: ClassificationData, run_dir: Path, *, overwrite: bool = False,
          progress: bool | None = None, devices: int | str = 1, nodes: int = 1, accelerator: str = "auto",
          resume: bool = False) -> Path:
    """Train ``plan`` on ``data``; return the run folder.

    ``resume=True`` continues an interrupted run in ``run_dir`` from ``checkpoints/last.ckpt``
    (weights, optimizer, scheduler, epoch; data order and random draws are functions of seed and
    epoch) with the run's own plan.
    ``devices`` x ``nodes`` > 1 trains data-parallel (``medcnn.train.distributed``): ``plan.batch_size``
    is the effective batch, and only the global rank 0 writes the run folder.
    A plan with ``ensemble: k > 1`` trains k members, each a run folder under ``members/``.
    """
    if plan.ensemble > 1:
        return _train_ensemble(plan, data, Path(run_dir), overwrite=overwrite, progress=progress,
                               devices=devices, nodes=nodes, accelerator=accelerator, resume=resume)
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
    from lightning.pytorch.loggers import CSVLogger

    from medcnn.infer.predictor import load_checkpoint
    from medcnn.train import distributed as dist
    from medcnn.train.callbacks import EpochMetrics, EpochSeed
    from medcnn.train.checkpoints import AtomicCheckpointIO, remove_partial_writes
    from medcnn.train.task_setup import task_and_loaders

    world = dist.world_size(devices, nodes)
    rank = dist.global_rank(world // max(1, nodes))
    primary = rank == 0
    batch = dist.per_process_batch(plan.batch_size, world)  # checks the split before any work
    ckpt_path = None
    run_dir = Path(run_dir)
    if resume:
        ckpt_path = run_dir / "checkpoints" / "last.ckpt"
        if primary:
            remove_partial_writes(run_dir / "checkpoints")
        if not ckpt_path.is_file():
            raise RunFolderError("nothing to resume: no checkpoints/last.ckpt (start a new run instead)", run_dir)
        load_checkpoint(ckpt_path)  # refuses a pickled payload with one clear line, before Lightning reads it
        if primary:
            _file_log(run_dir / "train.log")
            log.info("resuming from %s", ckpt_path)
    elif primary:  # the other processes of a data-parallel run only read; rank 0 writes the folder
        run_dir = prepare_run_dir(run_dir, overwrite)
        _file_log(run_dir / "train.log")
        plan.save(run_dir / "plan.yaml")
        if plan.task == "classify":
            _write_split(run_dir, data)
    if plan.threads > 0:
        torch.set_num_threads(plan.threads)
    precision = resolve_precision(plan.precision, plan.spatial_dims, plan.task)
    L.seed_everything(plan.seed, workers=True, verbose=False)
    info = {"medcnn": _version(), "resumed": resume, "torch": torch.__version__, "lightning": L.__version__,
            "command": " ".join(sys.argv), "data": data.source or data.name, "precision": precision,
            "threads": torch.get_num_threads(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "n": {}, "distributed": dist.distributed_record(plan, devices, nodes)}
    task, train_loader, val_loader, val_cases = task_and_loaders(plan, data, rank, world, batch, info,
                                                                 run_dir if (primary and not resume) else None)
    if plan.task == "segment" and plan.segment.tta_flips and not plan.mirror_tta:
        log.warning("segment.tta_flips is not applied: training does not mirror the cases (augment.flip false "
                    "or augment.p 0 or segment.mirror_axes empty), and mirrored views of an unmirrored network would be mislabelled")
    if plan.max_minutes > 0 and not resume:
        if world > 1:  # processes timing steps apart could choose different epochs and wait on each other forever
            info["time_budget"] = {"skipped": f"{world} processes: the plan's epochs are trained"}
            log.warning("max_minutes is ignored with %d processes; the plan's %d epochs are trained", world, plan.epochs)
        else:
            plan, task = _fit_budget(plan, task, train_loader, val_cases, info, precision, accelerator, run_dir)
    extra_callbacks = _transfer(plan, task, run_dir, info, resume, primary)  # after the budget's trial steps
    if primary:
        atomic_write_json(run_dir / "run.json", info)
    log.info("data %s: %s; plan %s %s, %d epochs, batch %d, precision %s", data.name, info["n"],
             plan.model.name, plan.preprocessing.input_size, plan.epochs, plan.batch_size, precision)

    if progress is None:
        progress = sys.stderr.isatty()
    ckpt = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor="val/score", mode="max",
                           save_top_k=1, enable_version_counter=False, auto_insert_metric_name=False)
    last = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", monitor=None, save_top_k=1,
                           enable_version_counter=False)  # every epoch (save_last only follows best saves)
    callbacks = [ckpt, last, EpochMetrics(run_dir, print_lines=not progress and primary, resume=resume),
                 EpochSeed(plan.seed), *extra_callbacks]
    if plan.ema_decay > 0:
        from medcnn.train.callbacks import weight_averaging

        callbacks.append(weight_averaging(plan.ema_decay))
    progress = progress and primary
    if progress:
        callbacks.append(RichProgressBar(leave=True))
    val_every = plan.segment.val_every if plan.task == "segment" else 1
    trainer = L.Trainer(max_epochs=plan.epochs, check_val_every_n_epoch=val_every, accelerator=accelerator,
                        devices=devices, num_nodes=nodes, strategy=dist.strategy(world),
                        sync_batchnorm=world > 1 and _on_gpu(accelerator), use_distributed_sampler=False,
                        plugins=[AtomicCheckpointIO()], precision=precision,
                        callbacks=callbacks, logger=CSVLogger(run_dir, name="logs", version=""),
                        enable_progress_bar=progress, enable_model_summary=False, num_sanity_val_steps=0,
                        log_every_n_steps=max(1, min(50, len(train_loader))), deterministic=False,
                        default_root_dir=run_dir)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
        trainer.fit(task, train_loader, val_loader, ckpt_path=ckpt_path, weights_only=True)
    if not trainer.is_global_zero:
        return run_dir
    info.update(threads=torch.get_num_threads(),  # per process: Lightning shares the cores between processes
                device=str(trainer.strategy.root_device),  # where it trained: cpu, cuda:0, ...
                finished=time.strftime("%Y-%m-%dT%H:%M:%S"), train_seconds=round(time.perf_counter() - t0, 2),
                best_val_score=float(ckpt.best_model_score) if ckpt.best_model_score is not None else None,
                best_checkpoint=os.path.relpath(ckpt.best_model_path, run_dir) if ckpt.best_model_path else None,
                best_epoch=_saved_epoch(ckpt.best_model_path), val_metric=plan.val_metric)
    atomic_write_json(run_dir / "run.json", info)
    best = info["best_val_score"]
    if best is not None and plan.val_metric == "loss":  # checkpoints maximise val/score = -loss
        best = -best
    log.info("done in %.1f s; best val %s = %s", info["train_seconds"], plan.val_metric, best)
    return run_dir


def _on_gpu(accelerator: str) -> bool:
    """Whether the processes train on GPUs: there BatchNorm statistics are synchronised across them
    (torch's SyncBatchNorm is GPU-only; CPU processes normalise over their own share of the batch)."""
    import torch

    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def _fit_budget(plan: Plan, task, train_loader, val_cases: list, info: dict, precision: str, accelerator: str,
                run_dir: Path):
    """Time a few steps, cut the epochs to fit ``plan.max_minutes`` (lengthening epochs of sampled
    patches to use the budget); the run's plan.yaml records the epochs and patches actually trained. Re-seeds, so a run does not depend on what the calibration drew."""
    import dataclasses

    import lightning as L

    from medcnn.train.budget import plan_epochs

    n_val = int(info["n"].get("val", info["n"].get("val_slices", 0)))
    spent = info.get("data_prepare_seconds", 0.0) / 60  # work done for training before the first step
    budget = dataclasses.replace(plan, max_minutes=max(plan.max_minutes - spent, 0.05 * plan.max_minutes))
    info["time_budget"] = rec = plan_epochs(task, budget, train_loader, val_cases, n_val, precision, accelerator)
    rec["data_prepare_minutes"] = round(spent, 2)
    L.seed_everything(plan.seed, workers=True, verbose=False)
    steps = rec.get("stretched_steps_per_epoch", rec["steps_per_epoch"])
    if steps != rec["steps_per_epoch"]:  # longer epochs of sampled patches use the whole budget
        train_loader.dataset.n_batches = steps
        section = "enhance" if plan.task == "enhance" else "segment"  # the config that holds patches_per_epoch
        cfg = dataclasses.replace(getattr(plan, section), patches_per_epoch=steps * plan.batch_size)
        plan = dataclasses.replace(plan, **{section: cfg})
    if rec["epochs"] != plan.epochs or steps != rec["steps_per_epoch"]:
        plan = dataclasses.replace(plan, epochs=rec["epochs"])
        plan.save(run_dir / "plan.yaml")
        old = task
        task = type(task)(plan.to_dict())
        for attr in ("val_cases", "val_pairs"):  # validation data the engine attached
            if hasattr(old, attr):
                setattr(task, attr, getattr(old, attr))
    return plan, task


def member_seed(seed: int, i: int) -> int:
    """Member i of an ensemble trained with ``seed``: seed, seed + 1000, ... so that ensembles of
    different seeds (the benchmark's 0, 1, 2) share no member."""
    return seed + 1000 * i


def member_dirs(run_dir: Path, plan: Plan) -> list[Path]:
    return [Path(run_dir) / "members" / f"m{i}" for i in range(plan.ensemble)]


def member_split(plan: Plan, i: int) -> dict:
    """Member i's ``segment.split``: the run's, with the training-subset seed shared by every member;
    in a cross-validation ensemble (``fold: cv``) member i validates on fold i of ``ensemble`` folds."""
    split = {"subset_seed": plan.seed, **plan.segment.split}
    if split.get("fold") == "cv":
        split.update(fold=i, folds=plan.ensemble)
    return split


def ensemble_split(members: list[dict]) -> dict:
    """The case split of an ensemble run from its members' split.json. Members sharing one split give it
    unchanged. Cross-validation members (one validation fold each) give every non-test case as "val",
    with the folds kept under "folds" so that `evaluate` predicts each validation case with the one
    member that did not train on it (out-of-fold)."""
    first = members[0]
    if all(m["val"] == first["val"] for m in members):
        return first
    val = sorted({c for m in members for c in m["val"]})
    return {"train": sorted({c for m in members for c in m["train"]}), "val": val, "test": first["test"],
            "folds": [m["val"] for m in members]}


def _transfer(plan: Plan, task, run_dir: Path, info: dict, resume: bool, primary: bool = True) -> list:
    """Pretrained weights into the task's network (a new run) and the strategy's callbacks; the
    names of the pretrained tensors are kept in transfer.json so a resumed run freezes the same."""
    if not plan.transfer.pretrained:
        return []
    from medcnn.transfer.finetune import apply_transfer, strategy_callbacks

    path = run_dir / "transfer.json"
    if resume:
        task.transferred = set(_read_json(path).get("transferred", []))
        return strategy_callbacks(plan, task.transferred)
    report, callbacks = apply_transfer(task, plan)
    info["pretrained"] = report
    if primary:
        atomic_write_json(path, {**report, "transferred": sorted(task.transferred)})
    return callbacks


def _train_ensemble(plan: Plan, data: ClassificationData, run_dir: Path, *, resume: bool, **kw) -> Path:
    """Members one after another; on resume, finished members are kept and the interrupted one continues."""
    import dataclasses

    from medcnn.train.distributed import global_rank, world_size

    nodes = kw.get("nodes", 1)
    primary = global_rank(world_size(kw.get("devices", 1), nodes) // max(1, nodes)) == 0
    if resume:
        if not (run_dir / "plan.yaml").is_file():
            raise RunFolderError("nothing to resume: no plan.yaml", run_dir)
    elif primary:
        run_dir = prepare_run_dir(run_dir, kw["overwrite"])
        plan.save(run_dir / "plan.yaml")
        if plan.task == "classify":
            _write_split(run_dir, data)
    t0 = time.perf_counter()
    members = []
    for i, m_dir in enumerate(member_dirs(run_dir, plan)):
        m_plan = dataclasses.replace(plan, ensemble=1, seed=member_seed(plan.seed, i),
                                     max_minutes=plan.max_minutes / plan.ensemble)  # the budget is the whole run's
        if plan.task == "segment":  # every member trains on the same cases (a train_fraction subset included)
            m_plan = dataclasses.replace(m_plan, segment=dataclasses.replace(plan.segment, split=member_split(plan, i)))
        info_file = m_dir / "run.json"
        m_info = _read_json(info_file) if info_file.is_file() else {}
        if "finished" not in m_info:
            log.info("ensemble member %d/%d (seed %d)", i + 1, plan.ensemble, m_plan.seed)
            can_resume = resume and (m_dir / "checkpoints" / "last.ckpt").is_file()
            train(m_plan, data, m_dir, **{**kw, "overwrite": True}, resume=can_resume)
            if not primary:  # the other processes of a data-parallel run go on to the next member
                continue
            m_info = _read_json(info_file)
        members.append(m_info)
    if not primary:
        return run_dir
    _file_log(run_dir / "train.log")
    if plan.task == "segment":  # the members' case split is the run's (evaluate reads it)
        atomic_write_json(run_dir / "split.json", ensemble_split([_read_json(d / "split.json") for d in member_dirs(run_dir, plan)]))
    scores = [m["best_val_score"] for m in members if m.get("best_val_score") is not None]
    info = {k: members[0][k] for k in ("medcnn", "torch", "lightning", "data", "precision", "threads", "n")}
    info.update(command=" ".join(sys.argv), ensemble=plan.ensemble, resumed=resume, val_metric=plan.val_metric,
                finished=time.strftime("%Y-%m-%dT%H:%M:%S"),
                train_seconds=round(sum(m["train_seconds"] for m in members), 2),
                best_val_score=float(sum(scores) / len(scores)) if scores else None,
                members=[{"dir": f"members/m{i}", "seed": member_seed(plan.seed, i), "best_val_score": m.get("best_val_score"),
                          "best_epoch": m.get("best_epoch"), "train_seconds": m["train_seconds"]}
                         for i, m in enumerate(members)])
    atomic_write_json(run_dir / "run.json", info)
    log.info("ensemble of %d done in %.1f s (this call %.1f s); mean best val %s = %s", plan.ensemble,
             info["train_seconds"], time.perf_counter() - t0, plan.val_metric, info["best_val_score"])
    return run_dir


def _saved_epoch(path: str) -> int | None:
    """The (1-based) epoch a Lightning checkpoint was saved after; None without one."""
    if not path or not os.path.isfile(path):
        return None
    import torch

    # mmap: the tensors stay on disk, only the small "epoch" entry is read
    epoch = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("epoch")
    return int(epoch) + 1 if epoch is not None else None


def _read_json(path: Path) -> dict:
    import json

    return json.loads(Path(path).read_text())


def _write_split(run_dir: Path, data: ClassificationData) -> None:
    if not data.files:
        return
    with atomic_path(run_dir / "split.csv") as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "split"])
        for split, files in data.files.items():
            for f, y in zip(files, data.labels[split]):
                w.writerow([f, data.class_names[int(y)], split])


def _file_log(path: Path) -> None:
    logger = logging.getLogger("medcnn")
    logger.setLevel(logging.INFO)
    for h in list(logger.handlers):
        if isinstance(h, logging.FileHandler):
            logger.removeHandler(h)
            h.close()
    h = logging.FileHandler(path)
    h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(h)


def _version() -> str:
    from medcnn import __version__

    return __version__
