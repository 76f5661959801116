"""Run folders: what a training run writes and everything reads back (:mod:`medcnn.runs.folder`)."""
from medcnn.runs.folder import (
    CHECKPOINTS,
    SCALE_SUFFIX,
    RunFolder,
    checkpoint_weights,
    dequantized,
    load_checkpoint,
    member_seed,
    saved_epoch,
)

__all__ = ["CHECKPOINTS", "SCALE_SUFFIX", "RunFolder", "checkpoint_weights", "dequantized", "load_checkpoint",
           "member_seed", "saved_epoch"]
