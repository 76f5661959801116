"""``medcnn export RUN --format onnx``: the run's network as one ONNX file, checked against PyTorch.

What goes into the graph, per task (everything else is recorded in ``RUN/export/model.json`` and in
the ONNX file's metadata, so the file alone says how to use it):

- classify: the network, ensemble members averaged and test-time symmetries applied; outputs
  ``logits`` and ``probabilities`` (softmax / sigmoid after the fitted temperature). Input: the
  preprocessed image batch (N, C, *input_size), intensities in [0, 1].
- segment: the network on one sliding window (N, C, *window) of the normalised case; output
  ``logits``. Windows, their Gaussian weighting and the mirrored views stay outside (recorded).
- enhance: the network with its residual, on normalised slices (N, C, H, W) whose sides are
  multiples of the network's stride; output ``restored``.

Parity is measured on real inputs -- the run's validation images, or files given with ``inputs`` --
through the same predictors that ``medcnn predict`` uses, PyTorch (float32) against ONNX Runtime;
above ``TOLERANCE`` the export fails and nothing is written.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medcnn.errors import MedcnnError
from medcnn.infer.onnx_net import EXPORT_DIR, export_paths, file_sha256
from medcnn.plan import Plan
from medcnn.utils.files import atomic_path, atomic_write_json

log = logging.getLogger("medcnn.export")

OPSET = 18
TOLERANCE = 1e-4  # max |ONNX - PyTorch| on probabilities / restored intensities (normalised units)


class ExportError(MedcnnError):
    """The export failed its parity check, or the network does not export."""


class _Classifier(nn.Module):
    def __init__(self, net: nn.Module, temperature: float, multilabel: bool):
        super().__init__()
        self.net, self.temperature, self.multilabel = net, float(temperature), multilabel

    def forward(self, x: torch.Tensor):
        logits = self.net(x).float()
        z = logits / self.temperature
        return logits, (torch.sigmoid(z) if self.multilabel else torch.softmax(z, dim=1))


class _Restorer(nn.Module):
    def __init__(self, net: nn.Module, residual: bool):
        super().__init__()
        self.net, self.residual = net, residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x).float()
        return x + out if self.residual else out


def torch_model(run: Path, checkpoint: str):
    """The PyTorch predictor of a run (float32: parity is checked against full precision)."""
    plan = Plan.load(run / "plan.yaml") if (run / "plan.yaml").is_file() else None
    task = plan.task if plan else "classify"
    if task == "segment":
        from medcnn.infer.segmenter import Segmenter

        m = Segmenter.from_run(run, checkpoint)
        m.bf16 = False
    elif task == "enhance":
        from medcnn.infer.enhancer import Enhancer

        m = Enhancer.from_run(run, checkpoint)
        m.bf16 = False
    else:
        from medcnn.infer.predictor import Predictor

        m = Predictor.from_run(run, checkpoint)
        m.bf16 = False
    return m


def _graph(model) -> tuple[nn.Module, torch.Tensor, dict, list[str], list[str], dict[str, Any]]:
    """(module, example input, dynamic shapes, input names, output names, what the record says)."""
    plan = model.plan
    c = plan.preprocessing.channels
    batch = torch.export.Dim("batch", min=1, max=4096)
    if plan.task == "segment":
        from medcnn.plan import window_of

        window = window_of(plan.segment)
        info = {"input": {"shape": ["batch", c, *window], "meaning": "one sliding window of the normalised case"},
                "outputs": {"logits": ["batch", plan.num_classes, *window]},
                "outside_the_graph": {"sliding_window": {"size": window, "overlap": plan.segment.sw_overlap,
                                                         "weighting": "gaussian"},
                                      "mirrored_views": plan.mirror_tta,
                                      "shifted_views_voxels": plan.segment.tta_shift,
                                      "normalization": plan.preprocessing.normalization,
                                      "normalization_args": plan.preprocessing.normalization_args,
                                      "target_spacing": plan.segment.target_spacing,
                                      "postprocess": model.post, "class_names": plan.class_names}}
        return model.net, torch.zeros(2, c, *window), {"x": {0: batch}}, ["image"], ["logits"], info
    if plan.task == "enhance":
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
    size = list(plan.preprocessing.input_size)
    info = {"input": {"shape": ["batch", c, *size], "meaning": "preprocessed images, intensities in [0, 1]"},
            "outputs": {"logits": ["batch", plan.num_classes], "probabilities": ["batch", plan.num_classes]},
            "temperature": model.temperature, "label_type": plan.label_type, "class_names": plan.class_names,
            "outside_the_graph": {"preprocessing": {"input_size": size, "channels": c,
                                                    "normalization": plan.preprocessing.normalization}}}
    module = _Classifier(model.net, model.temperature, plan.label_type == "multilabel")
    return module, torch.rand(2, c, *size), {"x": {0: batch}}, ["image"], ["logits", "probabilities"], info


@contextmanager
def _quiet():
    """The exporter's progress prints and warnings (e.g. about torchvision ops) off the console."""
    quiet = not log.isEnabledFor(logging.DEBUG)
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    try:
        if quiet:
            for lg in loggers:
                lg.setLevel(logging.ERROR)
        with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def checkpoint_files(run: Path, plan: Plan, checkpoint: str) -> list[Path]:
    """The checkpoint files a run's prediction reads (every member's for an ensemble)."""
    from medcnn.infer.predictor import CHECKPOINTS, _checkpoint_path

    if checkpoint not in CHECKPOINTS:
        return [Path(checkpoint)]
    if plan.ensemble > 1:
        from medcnn.train.engine import member_dirs

        return [m / CHECKPOINTS[checkpoint] for m in member_dirs(run, plan)]
    return [_checkpoint_path(run, checkpoint)]


def export_run(run: str | Path, checkpoint: str = "best", inputs: list[Path] | None = None,
               fmt: str = "onnx") -> dict[str, Any]:
    """Write RUN/export/model.onnx and model.json after a parity check; returns the record."""
    import onnx

    from medcnn.export.parity import check_parity

    if fmt != "onnx":
        raise ExportError(f"unknown export format {fmt!r} (supported: onnx)")
    run = Path(run)
    model = torch_model(run, checkpoint)
    plan = model.plan
    module, example, dynamic, in_names, out_names, info = _graph(model)
    module.eval()
    model_path, meta_path = export_paths(run)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=model_path.parent, prefix=".export-") as tmp:
        tmp_model = Path(tmp) / "model.onnx"
        try:
            with torch.no_grad(), _quiet():
                torch.onnx.export(module, (example,), str(tmp_model), dynamo=True, external_data=False,
                                  opset_version=OPSET, input_names=in_names, output_names=out_names,
                                  dynamic_shapes=dynamic, verbose=False)
        except Exception as e:  # noqa: BLE001 - the exporter raises many types; the user gets one line
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ExportError(f"the {plan.model.name} network does not export to ONNX: {first[:300]}", run) from None
        export_s = time.perf_counter() - t0
        record: dict[str, Any] = {
            "format": "onnx", "opset": OPSET, "task": plan.task, "checkpoint": checkpoint,
            "checkpoint_sha256": {str(p.relative_to(run)) if p.is_relative_to(run) else str(p): file_sha256(p)
                                  for p in checkpoint_files(run, plan, checkpoint)},
            "ensemble": plan.ensemble, **info,
            "torch": torch.__version__, "onnx": onnx.__version__, "export_seconds": round(export_s, 1),
            "plan": plan.to_dict()}
        from medcnn.infer.onnx_net import OnnxNet

        parity = check_parity(run, model, OnnxNet(tmp_model, record), inputs)
        record["parity"] = parity
        if not parity["ok"]:
            raise ExportError(f"ONNX and PyTorch disagree on {parity['inputs']}: max |difference| "
                              f"{parity['max_abs_diff']:.2e} > {TOLERANCE:g} ({parity['what']}); nothing written", run)
        proto = onnx.load(str(tmp_model))
        meta = {k: v for k, v in record.items() if k != "parity"}
        for key, value in (("medcnn", json.dumps(meta)), ("task", plan.task)):
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        proto.producer_name = "medcnn"
        with atomic_path(model_path) as out:
            onnx.save(proto, str(out))
    record["bytes"] = model_path.stat().st_size
    atomic_write_json(meta_path, record)
    log.info("exported %s (%.1f MB), parity max |diff| %.2e", model_path, record["bytes"] / 2**20, parity["max_abs_diff"])
    return record


__all__ = ["EXPORT_DIR", "ExportError", "TOLERANCE", "export_run"]
