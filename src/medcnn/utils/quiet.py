"""Silence the library chatter (Lightning tips and banners, deprecation warnings) that buries a
run's own progress lines. The CLI calls this unless --debug; the benchmark scripts always do."""
from __future__ import annotations

import logging
import warnings

_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning",
            "lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


def quiet_libraries() -> None:
    """Lightning's info logs down to warnings; User/Deprecation/Future warnings ignored."""
    for name in _LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for category in (UserWarning, DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)
