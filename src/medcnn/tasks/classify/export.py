"""The classifier's ONNX graph and its parity check on real images (``medcnn export``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medcnn.data.classification import load_classification
from medcnn.data.preprocess import resize_batch
from medcnn.errors import ExportError, MedcnnError
from medcnn.infer.predictor import Predictor

N_IMAGES = 32  # images compared


class _Classifier(nn.Module):
    """The network (members averaged, symmetries applied) with logits and calibrated probabilities out."""

    def __init__(self, net: nn.Module, temperature: float, multilabel: bool):
        super().__init__()
        self.net, self.temperature, self.multilabel = net, float(temperature), multilabel

    def forward(self, x: torch.Tensor):
        logits = self.net(x).float()
        z = logits / self.temperature
        return logits, (torch.sigmoid(z) if self.multilabel else torch.softmax(z, dim=1))


def graph(model: Predictor):
    plan = model.plan
    c = plan.preprocessing.channels
    batch = torch.export.Dim("batch", min=1, max=4096)
    size = list(plan.preprocessing.input_size)
    info = {"input": {"shape": ["batch", c, *size], "meaning": "preprocessed images, intensities in [0, 1]"},
            "outputs": {"logits": ["batch", plan.num_classes], "probabilities": ["batch", plan.num_classes]},
            "temperature": model.temperature, "label_type": plan.label_type, "class_names": plan.class_names,
            "outside_the_graph": {"preprocessing": {"input_size": size, "channels": c,
                                                    "normalization": plan.preprocessing.normalization}}}
    module = _Classifier(model.net, model.temperature, plan.label_type == "multilabel")
    return module, torch.rand(2, c, *size), {"x": {0: batch}}, ["image"], ["logits", "probabilities"], info


def parity(run: Path, model: Predictor, twin: Predictor, inputs: list[Path] | None) -> dict[str, Any]:
    plan = model.plan
    if inputs:
        x = torch.stack([model.preprocess(p) for p in inputs])
        source = f"{len(inputs)} given files"
    else:
        pre = plan.preprocessing
        try:
            ds = load_classification(plan.data, input_size=pre.input_size, channels=pre.channels,
                                     normalization=pre.normalization, seed=plan.seed)
        except MedcnnError as e:
            raise ExportError.no_inputs(run, f"the run's data is not available ({e})") from None
        images, _ = ds.split("val")
        x = torch.as_tensor(images[:N_IMAGES])
        if list(x.shape[2:]) != list(pre.input_size):
            x = resize_batch(x, pre.input_size)
        source = f"{len(x)} validation images of {plan.data}"
    a, b = model.predict_array(x), twin.predict_array(x)
    return {"what": "class probabilities", "inputs": source, "max_abs_diff": float(np.abs(a - b).max()),
            "same_prediction": float((a.argmax(1) == b.argmax(1)).mean())}
