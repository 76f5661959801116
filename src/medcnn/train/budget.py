"""Fit training into a wall-time budget (``plan.max_minutes``).

Before training, the loader's first batches and a few optimisation steps are timed on a real batch (with the run's precision,
threads and device; the weights are restored afterwards) and one validation pass is estimated;
the run then trains ``min(plan.epochs, what fits)`` epochs, so the learning-rate schedule still
runs to its end. Where an epoch is a number of sampled patches (segmentation), the epochs that fit
are lengthened to use the whole budget instead of leaving up to one epoch of it unused, and one
epoch longer than the whole budget is shortened to fit it. What was
measured and decided is recorded in the run's ``run.json``.
"""
from __future__ import annotations

import copy
import logging
import math
import time
from contextlib import nullcontext

import torch

log = logging.getLogger("medcnn.train")

# share of the budget planned for steps + validation. Real epochs run 5-9 % slower than the calibrated
# steps (Lightning's loop, logging, checkpoints; measured on MSD Hippocampus: 0.75 s calibrated vs
# 0.80-0.83 s per step in training), so 12 % is kept free
MARGIN = 0.88


def _autocast(precision: str, device: torch.device):
    if precision.startswith("bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision.startswith("16"):
        return torch.autocast(device.type, dtype=torch.float16)
    return nullcontext()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _device(accelerator: str) -> torch.device:
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def seconds_per_step(task, batch, precision: str, accelerator: str = "auto", warmup: int = 2, steps: int = 5) -> float:
    """Median wall time of one training step (forward, loss, backward, optimizer) on ``batch``."""
    device = _device(accelerator)
    state = copy.deepcopy(task.state_dict())
    task.to(device).train()
    batch = [b.to(device) if isinstance(b, torch.Tensor) else b for b in batch]
    opt = torch.optim.AdamW([p for p in task.parameters() if p.requires_grad], lr=0.0, weight_decay=0.0)
    times = []
    try:
        for i in range(warmup + steps):
            _sync(device)
            t0 = time.perf_counter()
            with _autocast(precision, device):
                loss = task.step_loss(batch)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            _sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    finally:
        task.load_state_dict(state)
        task.to("cpu")
    times.sort()
    return times[len(times) // 2]


def first_batches(loader, n: int = 3) -> tuple[object, float]:
    """The loader's first batch and the median time to produce one (patch sampling, on-the-fly
    degradation: work a training step waits for in the main process)."""
    it = iter(loader)
    times, first = [], None
    for _ in range(n):
        t = time.perf_counter()
        try:
            b = next(it)
        except StopIteration:
            break
        times.append(time.perf_counter() - t)
        first = b if first is None else first
    times.sort()
    return first, (times[len(times) // 2] if times else 0.0)


def seconds_per_validation(task, val_cases: list, n_items: int, batch_size: int, step_s: float, precision: str,
                           accelerator: str = "auto", probe: int = 2) -> float:
    """One validation pass: timed on up to ``probe`` whole cases for segmentation (sliding
    windows), else estimated as a forward pass (a third of a training step) per batch."""
    if not val_cases:
        return math.ceil(n_items / max(batch_size, 1)) * step_s / 3
    device = _device(accelerator)
    task.to(device).eval()
    try:
        t0 = time.perf_counter()
        with torch.no_grad(), _autocast(precision, device):
            for case in val_cases[:probe]:
                task.predict_logits(case.image.to(device))
        _sync(device)
        per_case = (time.perf_counter() - t0) / min(probe, len(val_cases))
    finally:
        task.to("cpu").train()
    return per_case * len(val_cases)


def fit_epochs(max_epochs: int, max_minutes: float, steps_per_epoch: int, step_s: float, val_s: float,
               val_every: int = 1) -> int:
    """Epochs (1 .. max_epochs) whose steps and validations fit ``MARGIN`` of the budget."""
    per_epoch = steps_per_epoch * step_s + val_s / max(val_every, 1)
    if per_epoch <= 0:
        return max_epochs
    return int(min(max_epochs, max(1, math.floor(max_minutes * 60 * MARGIN / per_epoch))))


def stretch_steps(epochs: int, max_epochs: int, max_minutes: float, steps_per_epoch: int, step_s: float,
                  val_s: float, val_every: int = 1) -> int:
    """Steps per epoch that fill ``MARGIN`` of the budget with ``epochs`` epochs (never fewer than
    ``steps_per_epoch``; unchanged when all ``max_epochs`` fit)."""
    if epochs >= max_epochs or step_s <= 0:
        return steps_per_epoch
    per_epoch = max_minutes * 60 * MARGIN / epochs - val_s / max(val_every, 1)
    return max(steps_per_epoch, int(math.floor(per_epoch / step_s)))


def shrink_steps(max_minutes: float, steps_per_epoch: int, step_s: float, val_s: float, val_every: int = 1) -> int:
    """Steps of the one epoch that fits ``MARGIN`` of the budget with its share of validation (at
    least one; at most ``steps_per_epoch``): an epoch of sampled patches longer than the whole budget
    (LGG: 1,000 steps of 0.8 s) is cut, so the budget holds."""
    per_epoch = max_minutes * 60 * MARGIN - val_s / max(val_every, 1)
    return max(1, min(steps_per_epoch, math.floor(per_epoch / max(step_s, 1e-9))))


def plan_epochs(task, plan, train_loader, val_cases: list, n_val: int, precision: str, accelerator: str,
                val_every: int = 1) -> dict:
    """Measure and decide; returns the record for run.json (``epochs`` is the decision)."""
    t0 = time.perf_counter()
    batch, data_s = first_batches(train_loader)
    step_s = seconds_per_step(task, batch, precision, accelerator) + data_s
    val_s = seconds_per_validation(task, val_cases, n_val, plan.batch_size, step_s, precision, accelerator)
    steps = len(train_loader)
    epochs = fit_epochs(plan.epochs, plan.max_minutes, steps, step_s, val_s, val_every)
    rec = {"max_minutes": plan.max_minutes, "planned_epochs": plan.epochs, "epochs": epochs,
           "seconds_per_step": round(step_s, 4), "data_seconds_per_step": round(data_s, 4), "steps_per_epoch": steps, "validation_seconds": round(val_s, 2)}
    if resizable_epochs(train_loader):
        if steps * step_s + val_s / max(val_every, 1) > plan.max_minutes * 60 * MARGIN:  # not even one epoch fits
            steps = shrink_steps(plan.max_minutes, steps, step_s, val_s, val_every)
        else:
            steps = stretch_steps(epochs, plan.epochs, plan.max_minutes, steps, step_s, val_s, val_every)
        rec["resized_steps_per_epoch"] = steps
    rec.update(estimated_minutes=round(epochs * (steps * step_s + val_s / max(val_every, 1)) / 60, 2),
               calibration_seconds=round(time.perf_counter() - t0, 2))
    log.info("time budget %.1f min: %.3f s/step x %d steps + %.1f s validation per epoch -> %d of %d epochs",
             plan.max_minutes, step_s, steps, val_s, epochs, plan.epochs)
    return rec


def resizable_epochs(loader) -> bool:
    """An epoch of this loader is a count of sampled batches (``n_batches``), not a pass over the data."""
    return hasattr(getattr(loader, "dataset", None), "n_batches")
