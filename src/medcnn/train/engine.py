"""The training engine: a run folder (:mod:`medcnn.runs`), a Lightning Trainer, and the checkpoint
chosen on validation."""
from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path

from medcnn import __version__
from medcnn.errors import RunFolderError
from medcnn.plan import Plan
from medcnn.runs import RunFolder, load_checkpoint, member_seed, saved_epoch
from medcnn.train import distributed as dist
from medcnn.train.distributed import global_rank, world_size
from medcnn.utils.precision import resolve_precision

log = logging.getLogger("medcnn.train")


def train(task, plan: Plan, data, run_dir: Path, *, overwrite: bool = False,
          progress: bool | None = None, devices: int | str = 1, nodes: int = 1, accelerator: str = "auto",
          resume: bool = False, loggers=()) -> Path:
    """Train ``plan`` on ``data`` as ``task`` (a :class:`medcnn.tasks.Task`: its module, loaders and
    training choices); return the run folder. ``medcnn.tasks.train`` picks the task of the plan.

    ``resume=True`` continues an interrupted run in ``run_dir`` from ``checkpoints/last.ckpt``
    (weights, optimizer, scheduler, epoch; data order and random draws are functions of seed and
    epoch) with the run's own plan.
    ``devices`` x ``nodes`` > 1 trains data-parallel (``medcnn.train.distributed``): ``plan.batch_size``
    is the effective batch, and only the global rank 0 writes the run folder.
    A plan with ``ensemble: k > 1`` trains k members, each a run folder under ``members/``.
    ``loggers`` adds experiment loggers to the run folder's CSV (``medcnn.train.loggers``).
    """
    from medcnn.train.loggers import check_loggers, make_loggers

    loggers = check_loggers(loggers)  # a missing package fails before any work
    if plan.ensemble > 1:
        return _train_ensemble(task, plan, data, Path(run_dir), overwrite=overwrite, progress=progress,
                               devices=devices, nodes=nodes, accelerator=accelerator, resume=resume, loggers=loggers)
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar

    from medcnn.train.callbacks import EpochMetrics, EpochSeed
    from medcnn.train.checkpoints import AtomicCheckpointIO, remove_partial_writes

    world = dist.world_size(devices, nodes)
    rank = dist.global_rank(world // max(1, nodes))
    primary = rank == 0
    batch = dist.per_process_batch(plan.batch_size, world)  # checks the split before any work
    ckpt_path = None
    run_dir = Path(run_dir)
    folder = RunFolder(run_dir)
    if resume:
        ckpt_path = folder.checkpoint_file("last")
        if primary:
            remove_partial_writes(folder.checkpoint_dir)
        if not ckpt_path.is_file():
            raise RunFolderError("nothing to resume: no checkpoints/last.ckpt (start a new run instead)", run_dir)
        load_checkpoint(ckpt_path)  # refuses a pickled payload with one clear line, before Lightning reads it
        if primary:
            _file_log(folder.log_file)
            log.info("resuming from %s", ckpt_path)
    elif primary:  # the other processes of a data-parallel run only read; rank 0 writes the folder
        folder.create(overwrite)
        _file_log(folder.log_file)
        folder.save_plan(plan)
        task.save_dataset_split(folder, data)
    if plan.threads > 0:
        torch.set_num_threads(plan.threads)
    precision = resolve_precision(plan.precision, task.cpu_bf16(plan))
    L.seed_everything(plan.seed, workers=True, verbose=False)
    info = {"medcnn": _version(), "resumed": resume, "torch": torch.__version__, "lightning": L.__version__,
            "command": " ".join(sys.argv), "data": data.source or data.name, "precision": precision,
            "threads": torch.get_num_threads(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "n": {}, "distributed": dist.distributed_record(plan, devices, nodes), "loggers": ["csv", *loggers]}
    seconds_before = _carry_over(folder, info) if resume else 0.0
    setup = task.setup(plan, data, rank, world, batch, info)
    module, train_loader, val_loader = setup.module, setup.train_loader, setup.val_loader
    if setup.split is not None and primary and not resume:
        folder.write_split(setup.split)
    if plan.max_minutes > 0 and not resume:
        if world > 1:  # processes timing steps apart could choose different epochs and wait on each other forever
            info["time_budget"] = {"skipped": f"{world} processes: the plan's epochs are trained"}
            log.warning("max_minutes is ignored with %d processes; the plan's %d epochs are trained", world, plan.epochs)
        else:
            plan, module = _fit_budget(task, plan, module, train_loader, setup.val_cases, info, precision, accelerator,
                                       run_dir)
    extra_callbacks = _transfer(task, plan, module, run_dir, info, resume, primary)  # after the budget's trial steps
    if primary:
        folder.write_info(info)
    log.info("data %s: %s; plan %s %s, %d epochs, batch %d, precision %s", data.name, info["n"],
             plan.model.name, plan.preprocessing.input_size, plan.epochs, plan.batch_size, precision)

    if progress is None:
        progress = sys.stderr.isatty()
    ckpt = ModelCheckpoint(dirpath=folder.checkpoint_dir, filename="best", monitor="val/score", mode="max",
                           save_top_k=1, enable_version_counter=False, auto_insert_metric_name=False)
    last = ModelCheckpoint(dirpath=folder.checkpoint_dir, filename="last", monitor=None, save_top_k=1,
                           enable_version_counter=False)  # every epoch (save_last only follows best saves)
    callbacks = [ckpt, last, EpochMetrics(run_dir, print_lines=not progress and primary, resume=resume),
                 EpochSeed(plan.seed), *extra_callbacks]
    if plan.ema_decay > 0:
        from medcnn.train.callbacks import weight_averaging

        callbacks.append(weight_averaging(plan.ema_decay))
    progress = progress and primary
    if progress:
        callbacks.append(RichProgressBar(leave=True))
    trainer = L.Trainer(max_epochs=plan.epochs, check_val_every_n_epoch=task.val_every(plan), accelerator=accelerator,
                        devices=devices, num_nodes=nodes, strategy=dist.strategy(world),
                        sync_batchnorm=world > 1 and _on_gpu(accelerator), use_distributed_sampler=False,
                        plugins=[AtomicCheckpointIO()], precision=precision,
                        callbacks=callbacks, logger=make_loggers(loggers, run_dir, len(info.get("resumed_at", []))),
                        enable_progress_bar=progress, enable_model_summary=False, num_sanity_val_steps=0,
                        log_every_n_steps=max(1, min(50, len(train_loader))), deterministic=False,
                        gradient_clip_val=plan.optim.grad_clip or None, gradient_clip_algorithm="norm",
                        default_root_dir=run_dir)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
        trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt_path, weights_only=True)
    if not trainer.is_global_zero:
        return run_dir
    info.update(threads=torch.get_num_threads(),  # per process: Lightning shares the cores between processes
                device=str(trainer.strategy.root_device),  # where it trained: cpu, cuda:0, ...
                finished=time.strftime("%Y-%m-%dT%H:%M:%S"),
                train_seconds=round(seconds_before + time.perf_counter() - t0, 2),
                best_val_score=float(ckpt.best_model_score) if ckpt.best_model_score is not None else None,
                best_checkpoint=os.path.relpath(ckpt.best_model_path, run_dir) if ckpt.best_model_path else None,
                best_epoch=saved_epoch(ckpt.best_model_path), val_metric=plan.val_metric)
    folder.write_info(info)
    best = info["best_val_score"]
    if best is not None and plan.val_metric == "loss":  # checkpoints maximise val/score = -loss
        best = -best
    log.info("done in %.1f s; best val %s = %s", info["train_seconds"], plan.val_metric, best)
    return run_dir


def _carry_over(folder: RunFolder, info: dict) -> float:
    """What a resumed run keeps of the interrupted one's run.json (its start, time budget, earlier
    resumptions), and the training seconds of the epochs it finished (metrics.json; the work of
    the epoch that was cut short is not counted)."""
    before = folder.info()
    info.update({k: before[k] for k in ("started", "time_budget", "pretrained") if k in before})
    info["resumed_at"] = [*before.get("resumed_at", []), time.strftime("%Y-%m-%dT%H:%M:%S")]
    epochs = json.loads(folder.metrics_file.read_text()).get("epochs", []) if folder.metrics_file.is_file() else []
    return float(sum(e.get("seconds") or 0.0 for e in epochs))


def _on_gpu(accelerator: str) -> bool:
    """Whether the processes train on GPUs: there BatchNorm statistics are synchronised across them
    (torch's SyncBatchNorm is GPU-only; CPU processes normalise over their own share of the batch)."""
    import torch

    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def _fit_budget(task, plan: Plan, module, train_loader, val_cases: list, info: dict, precision: str,
                accelerator: str, run_dir: Path):
    """Time a few steps, cut the epochs to fit ``plan.max_minutes`` (lengthening epochs of sampled
    patches to use the budget); the run's plan.yaml records the epochs and patches actually trained. Re-seeds, so a run does not depend on what the calibration drew."""
    import dataclasses

    import lightning as L

    from medcnn.train.budget import plan_epochs

    n_val = int(info["n"].get("val", info["n"].get("val_slices", 0)))
    spent = info.get("data_prepare_seconds", 0.0) / 60  # work done for training before the first step
    budget = dataclasses.replace(plan, max_minutes=max(plan.max_minutes - spent, 0.05 * plan.max_minutes))
    info["time_budget"] = rec = plan_epochs(module, budget, train_loader, val_cases, n_val, precision, accelerator,
                                            task.val_every(plan))
    rec["data_prepare_minutes"] = round(spent, 2)
    L.seed_everything(plan.seed, workers=True, verbose=False)
    steps = rec.get("resized_steps_per_epoch", rec["steps_per_epoch"])
    if steps != rec["steps_per_epoch"]:  # epochs of sampled patches resized to the budget
        train_loader.dataset.n_batches = steps
        plan = task.with_steps_per_epoch(plan, steps)
    if rec["epochs"] != plan.epochs or steps != rec["steps_per_epoch"]:
        plan = dataclasses.replace(plan, epochs=rec["epochs"])
        RunFolder(run_dir).save_plan(plan)
        module = task.module(plan, previous=module)
    return plan, module


def _transfer(task, plan: Plan, module, run_dir: Path, info: dict, resume: bool, primary: bool = True) -> list:
    """Pretrained weights into the task's network (a new run) and the strategy's callbacks; the
    names of the pretrained tensors are kept in transfer.json so a resumed run freezes the same."""
    if not plan.transfer.pretrained:
        return []
    from medcnn.transfer.finetune import apply_transfer, strategy_callbacks

    folder = RunFolder(run_dir)
    if resume:
        module.transferred = folder.transferred()
        return strategy_callbacks(plan, module.transferred)
    report, callbacks = apply_transfer(module, plan, task.out_channels(plan))
    info["pretrained"] = report
    if primary:
        folder.write_transfer(report, module.transferred)
    return callbacks


def _train_ensemble(task, plan: Plan, data, run_dir: Path, *, resume: bool, **kw) -> Path:
    """Members one after another; on resume, finished members are kept and the interrupted one continues."""
    import dataclasses

    nodes = kw.get("nodes", 1)
    primary = global_rank(world_size(kw.get("devices", 1), nodes) // max(1, nodes)) == 0
    folder = RunFolder(run_dir)
    if resume:
        if not folder.is_run():
            raise RunFolderError("nothing to resume: no plan.yaml", run_dir)
    elif primary:
        folder.create(kw["overwrite"])
        folder.save_plan(plan)
        task.save_dataset_split(folder, data)
    t0 = time.perf_counter()
    members = []
    for i, m_dir in enumerate(folder.members(plan.ensemble)):
        m_plan = dataclasses.replace(plan, ensemble=1, seed=member_seed(plan.seed, i),
                                     max_minutes=plan.max_minutes / plan.ensemble)  # the budget is the whole run's
        m_plan = task.member_plan(plan, m_plan, i)
        m_info = m_dir.info()
        if "finished" not in m_info:
            log.info("ensemble member %d/%d (seed %d)", i + 1, plan.ensemble, m_plan.seed)
            can_resume = resume and m_dir.checkpoint_file("last").is_file()
            train(task, m_plan, data, m_dir.path, **{**kw, "overwrite": True}, resume=can_resume)
            if not primary:  # the other processes of a data-parallel run go on to the next member
                continue
            m_info = m_dir.info()
        members.append(m_info)
    if not primary:
        return run_dir
    _file_log(folder.log_file)
    task.finish_ensemble(folder, plan)
    scores = [m["best_val_score"] for m in members if m.get("best_val_score") is not None]
    info = {k: members[0][k] for k in ("medcnn", "torch", "lightning", "data", "precision", "threads", "n")}
    info.update(command=" ".join(sys.argv), ensemble=plan.ensemble, resumed=resume, val_metric=plan.val_metric,
                finished=time.strftime("%Y-%m-%dT%H:%M:%S"),
                train_seconds=round(sum(m["train_seconds"] for m in members), 2),
                best_val_score=float(sum(scores) / len(scores)) if scores else None,
                members=[{"dir": folder.member_record(i), "seed": member_seed(plan.seed, i), "best_val_score": m.get("best_val_score"),
                          "best_epoch": m.get("best_epoch"), "train_seconds": m["train_seconds"]}
                         for i, m in enumerate(members)])
    folder.write_info(info)
    log.info("ensemble of %d done in %.1f s (this call %.1f s); mean best val %s = %s", plan.ensemble,
             info["train_seconds"], time.perf_counter() - t0, plan.val_metric, info["best_val_score"])
    return run_dir


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
    return __version__
