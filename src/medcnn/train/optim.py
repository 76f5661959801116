"""Optimizer and learning-rate schedule from the plan (shared by every task)."""
from __future__ import annotations

import torch

from medcnn.errors import ConfigError
from medcnn.plan import Plan


def make_optimizer(params, plan: Plan, total_steps: int):
    """What Lightning's ``configure_optimizers`` returns: the optimizer and a per-step or per-epoch schedule."""
    o = plan.optim
    if o.name == "adamw":
        opt = torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
    elif o.name == "adam":
        opt = torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
    elif o.name == "sgd":
        opt = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, nesterov=o.momentum > 0, weight_decay=o.weight_decay)
    else:
        raise ConfigError(f"unknown optimizer {o.name!r} (adamw | adam | sgd)")
    epochs = plan.epochs
    steps = max(1, int(total_steps))
    if o.scheduler == "onecycle":
        # one peak per parameter group (pretrained tensors may train at a fraction of the rate)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in opt.param_groups],
                                                    total_steps=steps, pct_start=0.15)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
    if o.scheduler == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
    if o.scheduler == "poly":  # nnU-Net: lr * (1 - step / steps) ** 0.9
        sched = torch.optim.lr_scheduler.PolynomialLR(opt, total_iters=steps, power=0.9)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
    if o.scheduler == "multistep":
        ms = sorted({max(1, int(round(f * epochs))) for f in o.milestones})
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=ms, gamma=0.1)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
    if o.scheduler == "none":
        return opt

    raise ConfigError(f"unknown scheduler {o.scheduler!r} (onecycle | cosine | poly | multistep | none)")
