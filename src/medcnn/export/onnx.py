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

from medcnn.errors import ExportError
from medcnn.export.parity import TOLERANCE, check_parity
from medcnn.infer.onnx_net import OnnxNet, export_paths, file_sha256
from medcnn.runs import RunFolder
from medcnn.tasks import run_task
from medcnn.utils.files import atomic_path, atomic_write_json

log = logging.getLogger("medcnn.export")

OPSET = 18


def torch_model(run: Path, checkpoint: str):
    """The PyTorch inferer of a run, in float32 (parity is checked against full precision), and its task."""
    task = run_task(run, "export", checkpoint)
    model = task.load(run, checkpoint)
    model.bf16 = False
    return model


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


def export_run(run: str | Path, checkpoint: str = "best", inputs: list[Path] | None = None,
               fmt: str = "onnx") -> dict[str, Any]:
    """Write RUN/export/model.onnx and model.json after a parity check; returns the record."""
    import onnx

    if fmt != "onnx":
        raise ExportError(f"unknown export format {fmt!r} (supported: onnx, monai-bundle)")
    run = Path(run)
    task = run_task(run, "export", checkpoint)
    model = torch_model(run, checkpoint)
    plan = model.plan
    module, example, dynamic, in_names, out_names, info = task.export_graph(model)
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
                                  for p in RunFolder(run).checkpoint_files(plan, checkpoint)},
            "ensemble": plan.ensemble, **info,
            "torch": torch.__version__, "onnx": onnx.__version__, "export_seconds": round(export_s, 1),
            "plan": plan.to_dict()}

        parity = check_parity(task, run, model, OnnxNet(tmp_model, record), inputs)
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


__all__ = ["ExportError", "TOLERANCE", "export_run"]
