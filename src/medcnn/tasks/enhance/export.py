"""The enhancer's ONNX graph (network + residual on normalised slices) and its parity check."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medcnn.data.enhance import load_enhance
from medcnn.errors import ExportError, MedcnnError
from medcnn.infer.enhancer import Enhancer
from medcnn.io import read_image
from medcnn.runs import RunFolder
from medcnn.tasks.enhance.evaluate import test_slices
from medcnn.transforms.normalize import get_normalizer

N_SLICES = 4  # slices compared


class _Restorer(nn.Module):
    def __init__(self, net: nn.Module, residual: bool):
        super().__init__()
        self.net, self.residual = net, residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x).float()
        return x + out if self.residual else out


def graph(model: Enhancer):
    plan = model.plan
    c = plan.preprocessing.channels
    batch = torch.export.Dim("batch", min=1, max=4096)
    s = model.stride
    hb, wb = torch.export.Dim("h_blocks", min=1, max=4096 // s), torch.export.Dim("w_blocks", min=1, max=4096 // s)
    example = torch.rand(2, c, 4 * s, 5 * s)
    info = {"input": {"shape": ["batch", c, f"{s}*h", f"{s}*w"], "meaning": "normalised slices (pad to the stride)"},
            "outputs": {"restored": ["batch", c, f"{s}*h", f"{s}*w"]},
            "outside_the_graph": {"normalization": plan.preprocessing.normalization,
                                  "normalization_args": plan.preprocessing.normalization_args,
                                  "stride": s, "volumes": "slice by slice along the last axis"}}
    return (_Restorer(model.net, plan.enhance.residual), example, {"x": {0: batch, 2: s * hb, 3: s * wb}},
            ["image"], ["restored"], info)


def parity(run: Path, model: Enhancer, twin: Enhancer, inputs: list[Path] | None) -> dict[str, Any]:
    plan = model.plan
    if inputs:
        worst = 0.0
        for p in inputs:
            a = read_image(p).array
            lo, hi = get_normalizer(plan).fit(np.asarray(a, np.float32)).window
            d = np.abs(model.restore_array(a) - twin.restore_array(a)).max() / max(hi - lo, 1e-12)
            worst = max(worst, float(d))
        return {"what": "restored intensities (normalised units)", "inputs": f"{len(inputs)} given files",
                "max_abs_diff": worst}

    try:
        split = RunFolder(run).split()
        slices = test_slices(plan, load_enhance(plan.data), split, "val", N_SLICES)
    except (MedcnnError, OSError, ValueError) as e:
        raise ExportError.no_inputs(run, f"the run's data is not available ({e})") from None
    worst = 0.0
    for s in slices:
        a, b = model.restore_normalised(s[None]), twin.restore_normalised(s[None])
        worst = max(worst, float((a - b).abs().max()))
    return {"what": "restored intensities (normalised units)", "inputs": f"{len(slices)} validation slices of {plan.data}",
            "max_abs_diff": worst}
