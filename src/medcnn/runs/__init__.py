"""Run folders: what a training run writes and everything reads back (:mod:`medcnn.runs.folder`)."""
from medcnn.runs.folder import (
    CHECKPOINTS,
    RunFolder,
    checkpoint_weights,
    load_checkpoint,
    member_seed,
    saved_epoch,
)

__all__ = ["CHECKPOINTS", "RunFolder", "checkpoint_weights", "load_checkpoint", "member_seed", "saved_epoch"]
