"""Checkpoint files that survive a kill: written beside their final name, synced, then renamed.

A SIGKILL during a write leaves the previous ``last.ckpt`` intact and at most a hidden
``.last.ckpt.*.tmp``, which the next ``--resume`` removes. Checkpoints are read back with
``torch.load(..., weights_only=True)`` only (see ``medcnn.runs.load_checkpoint``).
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

log = logging.getLogger("medcnn.train")


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        dest = Path(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                torch.save(checkpoint, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


def remove_partial_writes(folder: Path) -> list[str]:
    """Delete the temporary files of checkpoint writes that a kill interrupted; return their names."""
    gone = []
    for f in Path(folder).glob(".*.ckpt.*.tmp"):
        f.unlink(missing_ok=True)
        gone.append(f.name)
    if gone:
        log.info("removed %d partial checkpoint write(s) of a killed run: %s", len(gone), ", ".join(gone))
    return gone
