"""What every task's LightningModule shares: the training-loss bookkeeping and the divergence check."""
from __future__ import annotations

import lightning as L
import torch

from medcnn.errors import MedcnnError


class TaskModule(L.LightningModule):
    transferred: set[str] = set()  # network tensors filled from pretrained weights (medcnn.transfer)

    def optimizer_params(self) -> list[dict]:
        """The network's parameters as optimizer groups (pretrained ones at their own learning rate)."""
        from medcnn.transfer.finetune import param_groups

        return param_groups(self.net, self.plan, self.transferred)

    def step_loss(self, batch) -> torch.Tensor:
        """The training loss of one batch (augmentation included); ``training_step`` and the
        time-budget calibration (``medcnn.train.budget``) both call it."""
        raise NotImplementedError

    def training_step(self, batch, batch_idx):
        return self.record_train_loss(self.step_loss(batch), batch_idx, len(batch[0]))

    def on_train_epoch_start(self) -> None:
        self._loss_sum, self._loss_n = 0.0, 0
        loader = getattr(self.trainer, "train_dataloader", None)
        # the epoch's data order is a function of (seed, epoch): Lightning's own sampler-epoch counter
        # lags by one after a resume from an end-of-epoch checkpoint, so the task sets it
        for source in (getattr(loader, "dataset", None), getattr(loader, "batch_sampler", None)):
            if hasattr(source, "set_epoch"):
                source.set_epoch(self.current_epoch)

    def record_train_loss(self, loss: torch.Tensor, batch_idx: int, n: int) -> torch.Tensor:
        """Refuse a non-finite loss (one clear error), log it, and keep the epoch's running mean."""
        if not torch.isfinite(loss):
            raise MedcnnError(f"training diverged: the loss is {float(loss)} at epoch {self.current_epoch + 1}, "
                              f"step {batch_idx}; try a lower optim.lr or precision=32")
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=n)
        self._loss_sum = getattr(self, "_loss_sum", 0.0) + float(loss.detach()) * n
        self._loss_n = getattr(self, "_loss_n", 0) + n
        return loss

    @property
    def mean_train_loss(self) -> float:
        """The epoch's mean training loss over all samples (of all processes in a data-parallel run)."""
        total, n = getattr(self, "_loss_sum", 0.0), getattr(self, "_loss_n", 0)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            t = torch.tensor([total, float(n)], dtype=torch.float64, device=self.device)
            torch.distributed.all_reduce(t)
            total, n = float(t[0]), int(t[1])
        return total / n if n else float("nan")
