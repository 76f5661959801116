"""ONNX-vs-PyTorch parity on real inputs, through the inferers ``medcnn predict`` uses; each task
says what it compares (``Task.parity``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

TOLERANCE = 1e-4  # max |ONNX - PyTorch| on probabilities / restored intensities (normalised units)


def check_parity(task, run: Path, model, net, inputs: list[Path] | None = None) -> dict[str, Any]:
    """Max |ONNX - PyTorch| over real inputs: probabilities (classify, segment) or restored
    intensities in the model's normalised units (enhance); ``ok`` when within the tolerance.
    ``net``: the ONNX network, run by the same inferer as ``model``."""
    rec = task.parity(run, model, model.with_network(net), inputs)
    rec["tolerance"] = TOLERANCE
    rec["ok"] = bool(rec["max_abs_diff"] <= TOLERANCE and rec.get("mask_voxels_differing_off_ties", 0) == 0)
    return rec
