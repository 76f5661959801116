"""An exported ONNX model (``medcnn export``) behind the interface of a PyTorch network, so the
predictors, sliding windows and enhancers run it unchanged (``--engine onnx``).

ONNX Runtime runs the graph on the CPU with the process's thread count; the graph holds everything
between the normalised input and the network's output (ensemble members, test-time symmetries,
the residual of an enhancement network), and ``RUN/export/model.json`` the rest.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medcnn.errors import RunFolderError
from medcnn.plan import Plan
from medcnn.runs import RunFolder

ENGINES = ("torch", "onnx")


def export_paths(run: str | Path) -> tuple[Path, Path]:
    """(model.onnx, model.json) of a run's export."""
    return RunFolder(run).export_files()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class OnnxNet(torch.nn.Module):
    """``net(x)`` on an ONNX Runtime session: torch tensor in, the graph's first output out. Its graph
    already holds the test-time symmetries (classification) and the residual (enhancement), and runs
    in float32 (``exported``: the predictors neither add these again nor autocast)."""

    exported = True

    def __init__(self, path: str | Path, record: dict[str, Any] | None = None, threads: int | None = None):
        super().__init__()
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.record = record or {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = np.ascontiguousarray(x.detach().float().cpu().numpy())
        return torch.from_numpy(self.session.run(None, {self.input_name: a})[0])


def load_onnx(run: str | Path, checkpoint: str = "best") -> tuple[dict[str, Any], OnnxNet]:
    """The export record and the ONNX network of a run; refuses a missing or stale export."""
    model, meta = export_paths(run)
    if not model.is_file() or not meta.is_file():
        raise RunFolderError(f"has no ONNX export; run `medcnn export {run}` first", run)
    try:
        record = json.loads(meta.read_text())
    except ValueError:
        raise RunFolderError("unreadable export record; run `medcnn export` again", meta) from None
    if record.get("checkpoint") != checkpoint:
        raise RunFolderError(f"the ONNX export is of the {record.get('checkpoint')!r} checkpoint, not {checkpoint!r}; "
                             f"run `medcnn export {run} --checkpoint {checkpoint}`", run)
    for name, digest in record.get("checkpoint_sha256", {}).items():
        ckpt = Path(run) / name
        if not ckpt.is_file() or file_sha256(ckpt) != digest:
            raise RunFolderError(f"the ONNX export is older than {name}; run `medcnn export {run}` again", run)
    return record, OnnxNet(model, record)


def onnx_model(run: str | Path, checkpoint: str = "best"):
    """(plan, ONNX network) of a run's export, for the predictors' ``engine="onnx"``."""
    record, net = load_onnx(run, checkpoint)
    return Plan.from_dict(record["plan"], source=str(export_paths(run)[1])), net
