"""ONNX-vs-PyTorch parity on real inputs, through the predictors ``medcnn predict`` uses."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medcnn.errors import MedcnnError

N_IMAGES = 32  # classification images compared
N_CASES = 2  # segmentation cases
N_SLICES = 4  # enhancement slices


def onnx_twin(model, net):
    """The same predictor class as ``model`` around the ONNX network ``net``."""
    from medcnn.infer.enhancer import Enhancer
    from medcnn.infer.predictor import Predictor
    from medcnn.infer.segmenter import Segmenter

    if isinstance(model, Segmenter):
        return Segmenter(model.plan, net, model.run_dir, post=model.post)
    if isinstance(model, Enhancer):
        return Enhancer(model.plan, net, model.run_dir)
    return Predictor(model.plan, net, model.run_dir, model.checkpoint, model.temperature)


def _no_inputs(run: Path, why: str):
    from medcnn.export.onnx import ExportError

    return ExportError(f"parity needs real inputs and {why}; pass some with --inputs FILE ...", run)


def check_parity(run: Path, model, net, inputs: list[Path] | None = None) -> dict[str, Any]:
    """Max |ONNX - PyTorch| over real inputs: probabilities (classify, segment) or restored
    intensities in the model's normalised units (enhance); ``ok`` when within the tolerance."""
    from medcnn.export.onnx import TOLERANCE

    twin = onnx_twin(model, net)
    task = model.plan.task
    if task == "segment":
        rec = _segment(run, model, twin, inputs)
    elif task == "enhance":
        rec = _enhance(run, model, twin, inputs)
    else:
        rec = _classify(run, model, twin, inputs)
    rec["tolerance"] = TOLERANCE
    rec["ok"] = bool(rec["max_abs_diff"] <= TOLERANCE and rec.get("mask_voxels_differing_off_ties", 0) == 0)
    return rec


def _classify(run: Path, model, twin, inputs) -> dict[str, Any]:
    plan = model.plan
    if inputs:
        x = torch.stack([model.preprocess(p) for p in inputs])
        source = f"{len(inputs)} given files"
    else:
        from medcnn.data.classification import load_classification
        from medcnn.data.preprocess import resize_batch

        pre = plan.preprocessing
        try:
            ds = load_classification(plan.data, input_size=pre.input_size, channels=pre.channels,
                                     normalization=pre.normalization, seed=plan.seed)
        except MedcnnError as e:
            raise _no_inputs(run, f"the run's data is not available ({e})") from None
        images, _ = ds.split("val")
        x = torch.as_tensor(images[:N_IMAGES])
        if list(x.shape[2:]) != list(pre.input_size):
            x = resize_batch(x, pre.input_size)
        source = f"{len(x)} validation images of {plan.data}"
    a, b = model.predict_array(x), twin.predict_array(x)
    return {"what": "class probabilities", "inputs": source, "max_abs_diff": float(np.abs(a - b).max()),
            "same_prediction": float((a.argmax(1) == b.argmax(1)).mean())}


def _segment(run: Path, model, twin, inputs) -> dict[str, Any]:
    from medcnn.io import read_image

    if inputs:
        images = [read_image(p) for p in inputs]
        source = f"{len(inputs)} given files"
    else:
        from medcnn.data.segmentation import read_case
        from medcnn.tasks.evaluate_segment import _load
        from medcnn.train.seg_data import cases_of

        try:
            _, data, splits = _load(run)
        except MedcnnError as e:
            raise _no_inputs(run, f"the run's data is not available ({e})") from None
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


def _enhance(run: Path, model, twin, inputs) -> dict[str, Any]:
    plan = model.plan
    if inputs:
        from medcnn.io import read_image
        from medcnn.transforms.normalize import get_normalizer

        worst = 0.0
        for p in inputs:
            a = read_image(p).array
            lo, hi = get_normalizer(plan).fit(np.asarray(a, np.float32)).window
            d = np.abs(model.restore_array(a) - twin.restore_array(a)).max() / max(hi - lo, 1e-12)
            worst = max(worst, float(d))
        return {"what": "restored intensities (normalised units)", "inputs": f"{len(inputs)} given files",
                "max_abs_diff": worst}
    from medcnn.data.enhance import load_enhance
    from medcnn.tasks.evaluate_enhance import test_slices

    try:
        split = json.loads((run / "split.json").read_text())
        slices = test_slices(plan, load_enhance(plan.data), split, "val", N_SLICES)
    except (MedcnnError, OSError, ValueError) as e:
        raise _no_inputs(run, f"the run's data is not available ({e})") from None
    worst = 0.0
    for s in slices:
        a, b = model.restore_normalised(s[None]), twin.restore_normalised(s[None])
        worst = max(worst, float((a - b).abs().max()))
    return {"what": "restored intensities (normalised units)", "inputs": f"{len(slices)} validation slices of {plan.data}",
            "max_abs_diff": worst}
