"""The segmenter's ONNX graph (one sliding window) and its parity check on real cases (``medcnn export``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from medcnn.data.segmentation import read_case
from medcnn.errors import ExportError, MedcnnError
from medcnn.infer.segmenter import Segmenter
from medcnn.io import read_image
from medcnn.plan import window_of
from medcnn.tasks.segment.evaluate import load_run_data
from medcnn.train.seg_data import cases_of

N_CASES = 2  # cases compared


def graph(model: Segmenter):
    plan = model.plan
    c = plan.preprocessing.channels
    batch = torch.export.Dim("batch", min=1, max=4096)
    window = window_of(plan.segment)
    info = {"input": {"shape": ["batch", c, *window], "meaning": "one sliding window of the normalised case"},
            "outputs": {"logits": ["batch", plan.num_classes, *window]},
            "outside_the_graph": {"sliding_window": {"size": window, "overlap": plan.segment.sw_overlap,
                                                     "weighting": "gaussian"},
                                  "mirrored_views": plan.mirror_tta if model.mirror else [],
                                  "shifted_views_voxels": plan.segment.tta_shift,
                                  "normalization": plan.preprocessing.normalization,
                                  "normalization_args": plan.preprocessing.normalization_args,
                                  "target_spacing": plan.segment.target_spacing,
                                  "postprocess": model.post, "foreground_threshold": model.threshold,
                                  "class_names": plan.class_names}}
    return model.net, torch.zeros(2, c, *window), {"x": {0: batch}}, ["image"], ["logits"], info


def parity(run: Path, model: Segmenter, twin: Segmenter, inputs: list[Path] | None) -> dict[str, Any]:
    if inputs:
        images = [read_image(p) for p in inputs]
        source = f"{len(inputs)} given files"
    else:
        try:
            _, data, splits = load_run_data(run)
        except MedcnnError as e:
            raise ExportError.no_inputs(run, f"the run's data is not available ({e})") from None
        ids = (splits.get("val") or splits.get("test") or [])[:N_CASES]
        images = [read_case(c, data.labels)[0] for c in cases_of(data, ids)]
        source = f"{len(images)} validation cases of {model.plan.data}"
    worst, off_ties, voxels = 0.0, 0, 0
    for image in images:
        a, b = model.probabilities(image), twin.probabilities(image)
        worst = max(worst, float((a - b).abs().max()))
        la, lb = a.argmax(0), b.argmax(0)
        top2 = a.topk(2, dim=0).values if a.shape[0] > 1 else a
        tie = (top2[0] - top2[-1]) < 2e-4  # a label may flip only where two classes are this close
        off_ties += int(((la != lb) & ~tie).sum())
        voxels += int(la.numel())
    return {"what": "class probabilities and masks", "inputs": source, "max_abs_diff": worst,
            "mask_voxels_differing_off_ties": off_ties, "voxels": voxels}
