"""Fine-tuning strategies over the tensors a pretrained source filled (``LoadReport.transferred``).

- ``finetune``: everything trains; the pretrained tensors at ``backbone_lr`` x the plan's rate;
- ``linear-probe``: only the new tensors train (the head); pretrained parameters are frozen and
  pretrained batch-norm layers keep their statistics (evaluation mode);
- ``freeze-then-unfreeze``: a linear probe for ``unfreeze_epoch`` epochs, then ``finetune``.
"""
from __future__ import annotations

import lightning as L
from torch import nn

from medcnn.plan import Plan
from medcnn.transfer.weights import load_pretrained


def param_groups(net: nn.Module, plan: Plan, transferred: set[str]) -> list[dict]:
    """Optimizer parameter groups: new tensors at the plan's learning rate, pretrained ones at
    ``transfer.backbone_lr`` times it (one group when nothing was transferred)."""
    named = list(net.named_parameters())
    if not transferred:
        return [{"params": [p for _, p in named], "name": "all"}]
    new = [p for n, p in named if n not in transferred]
    old = [p for n, p in named if n in transferred]
    groups = [{"params": new, "name": "new"}] if new else []
    if old:
        groups.append({"params": old, "name": "pretrained", "lr": plan.optim.lr * plan.transfer.backbone_lr})
    return groups


def frozen_epochs(plan: Plan) -> int | None:
    """Epochs during which the pretrained tensors stay frozen (None: always, 0: never)."""
    s = plan.transfer.strategy
    if not plan.transfer.pretrained or s == "finetune":
        return 0
    return None if s == "linear-probe" else int(plan.transfer.unfreeze_epoch)


class FreezePretrained(L.Callback):
    """Applies the plan's strategy: freezes the pretrained parameters (and their batch-norm
    statistics) while the strategy says so, unfreezes them after."""

    def __init__(self, transferred: set[str], until_epoch: int | None):
        self.transferred, self.until = set(transferred), until_epoch
        self._norms: list[nn.Module] | None = None  # found once, not on every batch

    def _frozen(self, epoch: int) -> bool:
        return self.until is None or epoch < self.until

    def _norm_layers(self, net: nn.Module) -> list[nn.Module]:
        out = []
        for name, m in net.named_modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and f"{name}.weight" in self.transferred:
                out.append(m)
        return out

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        frozen = self._frozen(pl_module.current_epoch)
        for n, p in pl_module.net.named_parameters():
            if n in self.transferred:
                p.requires_grad_(not frozen)
                if frozen:
                    p.grad = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._frozen(pl_module.current_epoch):  # Lightning puts the module in train mode after validation
            if self._norms is None:
                self._norms = self._norm_layers(pl_module.net)
            for m in self._norms:
                m.eval()


def strategy_callbacks(plan: Plan, transferred: set[str]) -> list[L.Callback]:
    """The callbacks that apply the plan's strategy to the pretrained tensors (none for finetune)."""
    until = frozen_epochs(plan)
    return [] if until == 0 else [FreezePretrained(transferred, until)]


def apply_transfer(task, plan: Plan, out_channels: int) -> tuple[dict, list[L.Callback]]:
    """Load ``plan.transfer.pretrained`` into ``task.net`` (printing what went where; ``out_channels``:
    the network's outputs, which tell its head); return the report for run.json and the callbacks
    that apply the strategy."""
    import logging

    report = load_pretrained(task.net, plan.transfer.pretrained, allow_inflate=plan.transfer.inflate,
                             out_channels=out_channels, partial=plan.transfer.partial)
    logging.getLogger("medcnn").info(report.summary())
    task.transferred = report.transferred
    callbacks = strategy_callbacks(plan, report.transferred)
    return {**report.to_dict(), "strategy": plan.transfer.strategy, "backbone_lr": plan.transfer.backbone_lr}, callbacks

