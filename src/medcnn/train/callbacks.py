"""Callbacks that write the run folder: per-epoch metrics JSON, learning curve, log lines."""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import lightning as L

from medcnn.runs import RunFolder
from medcnn.utils.files import atomic_savefig, atomic_write_json

log = logging.getLogger("medcnn.train")


def _num(v):
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


# the validation losses of the pretraining tasks (medcnn.tasks.pretrain.contrastive, medcnn.tasks.pretrain.restoration)
PRETEXT_LOSSES = {"val_contrastive": "val contrastive loss", "val_restoration_l1": "val restoration L1"}


class EpochMetrics(L.Callback):
    """After each validation: append the epoch's numbers to metrics.json and redraw the curve."""

    def __init__(self, run_dir: Path, print_lines: bool, resume: bool = False):
        self.folder = RunFolder(run_dir)
        self.print_lines = print_lines
        self.history: list[dict] = []
        f = self.folder.metrics_file
        if resume and f.is_file():
            import json

            self.history = json.loads(f.read_text()).get("epochs", [])
        self._t0 = time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module):
        self._t0 = time.perf_counter()

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking or not trainer.is_global_zero:  # one writer of the run folder
            return
        m = getattr(pl_module, "epoch_summary", {})
        keys = list(m) if ({"val_dice", "val_psnr", *PRETEXT_LOSSES} & set(m)) else ["train_loss", "val_loss", "val_auc", "val_acc"]
        row = {
            "epoch": trainer.current_epoch + 1,
            "step": int(trainer.global_step),  # optimizer steps so far
            **{k: _num(m[k]) if k in m else None for k in keys},
            "lr": trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None,
            "seconds": round(time.perf_counter() - self._t0, 3),
        }
        self.history = [h for h in self.history if h["epoch"] != row["epoch"]] + [row]
        atomic_write_json(self.folder.metrics_file, {"epochs": self.history})
        if "val_dice" in row:
            val = f"val dice {_fmt(row['val_dice'])}"
        elif "val_psnr" in row:
            val = f"val PSNR {_fmt(row['val_psnr'])} dB (degraded {_fmt(row.get('val_psnr_degraded'))})"
        elif PRETEXT_LOSSES.keys() & row.keys():
            key = next(k for k in PRETEXT_LOSSES if k in row)
            val = f"{PRETEXT_LOSSES[key]} {_fmt(row[key])}"
        else:
            val = f"val auc {_fmt(row['val_auc'])}  acc {_fmt(row['val_acc'])}"
        line = f"epoch {row['epoch']}/{trainer.max_epochs}  loss {_fmt(row['train_loss'])}  {val}  ({row['seconds']:.1f} s)"
        log.info(line)
        if self.print_lines:
            print(line, flush=True)

    def on_fit_end(self, trainer, pl_module):
        if self.history and trainer.is_global_zero:
            plot_learning_curve(self.history, self.folder.curve_file)


class EpochSeed(L.Callback):
    """Reseed Python, NumPy and torch before the first step of every epoch from (seed, epoch, rank).

    Everything random in an epoch (augmentation, dropout) is then a function of those three: a run
    resumed from the checkpoint of epoch k trains epoch k + 1 as the uninterrupted run did, and the
    processes of a data-parallel run draw different augmentations for their shares of a batch."""

    def __init__(self, seed: int):
        self.seed = int(seed)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx != 0:  # not at epoch start: creating data iterators draws from torch's RNG, and a
            return  # resumed run creates them in another order than an uninterrupted one
        import random

        import numpy as np
        import torch

        s = np.random.SeedSequence([self.seed, trainer.current_epoch, trainer.global_rank]).generate_state(1)[0]
        random.seed(int(s))
        np.random.seed(int(s))
        torch.manual_seed(int(s))


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4f}"


def plot_learning_curve(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key, label in (("train_loss", "train loss"), ("val_loss", "val loss"), *PRETEXT_LOSSES.items()):
        ys = [h.get(key) for h in history]
        if any(y is not None for y in ys):
            a1.plot(ep, [float("nan") if y is None else y for y in ys], label=label)
    a1.set_xlabel("epoch"), a1.set_ylabel("loss"), a1.legend(), a1.grid(alpha=0.3)
    psnr = any(h.get("val_psnr") is not None for h in history)
    keys = ((("val_psnr", "val PSNR"), ("val_psnr_degraded", "degraded input")) if psnr else
            (("val_auc", "val AUC"), ("val_acc", "val ACC"), ("val_dice", "val Dice")))
    for key, label in keys:
        ys = [h.get(key) for h in history]
        if all(y is None for y in ys):
            continue
        a2.plot(ep, [float("nan") if y is None else y for y in ys], label=label)
    a2.set_xlabel("epoch"), a2.legend(), a2.grid(alpha=0.3)
    if psnr:
        a2.set_ylabel("dB")
    else:
        a2.set_ylim(0, 1.0)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)


def _ema_with_warmup(averaged, current, num_averaged, decay: float):
    """EMA whose decay grows as (1 + n) / (10 + n) up to ``decay``: early averages are not
    dominated by the random initial weights (a short CPU training is a few thousand steps)."""
    n = float(num_averaged)
    d = min(decay, (1.0 + n) / (10.0 + n))
    return averaged * d + current * (1.0 - d)


def weight_averaging(decay: float) -> L.Callback:
    """Lightning's WeightAveraging with the warmed-up EMA above (parameters and buffers)."""
    from functools import partial

    from lightning.pytorch.callbacks import WeightAveraging

    return WeightAveraging(avg_fn=partial(_ema_with_warmup, decay=decay), use_buffers=True)
