"""``medcnn export RUN --format monai-bundle``: the run as a MONAI bundle that MONAI alone can run.

``RUN/export/monai_bundle/`` holds, after MONAI's bundle specification:

- ``configs/metadata.json``: versions, task, description, the model card's fields (data source,
  intended use, test metrics when the run was evaluated) and ``network_data_format`` (input and
  output tensors: channels, spatial shape, value range, channel meanings);
- ``configs/inference.json``: MONAI components only: the TorchScript network, the preprocessing
  (load, channel first, the plan's intensity scaling and input size), the inferer (whole image for
  classification and enhancement; sliding windows with the plan's window and overlap for
  segmentation) and an evaluator that writes the predictions (``python -m monai.bundle run``);
- ``models/model.ts`` (TorchScript, the metadata inside) and ``models/model.pt`` (its state dict);
- ``docs/README.md``: what is inside the network and what is not.

Inside the network: what ``medcnn export --format onnx`` puts in its graph (classification: ensemble
members, test-time symmetries, the fitted temperature, softmax; segmentation: the network on one
window; enhancement: the network with its residual). Outside, and stated in the README: for
segmentation the mirrored / shifted views, resampling to the plan's spacing and the post-processing
that ``medcnn predict`` adds. Before anything is written, the TorchScript network is compared with
PyTorch on the task's own parity inputs (``medcnn export``'s check); above 1e-4 nothing is written.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medcnn import __version__
from medcnn.errors import ExportError
from medcnn.export.parity import TOLERANCE, check_parity
from medcnn.tasks import run_task

BUNDLE = "monai_bundle"
VERSION = "0.1.0"


class _SingleOutput(nn.Module):
    """MONAI bundles expect one output tensor: the probabilities of a classifier, else the first output."""

    def __init__(self, graph: nn.Module, index: int):
        super().__init__()
        self.graph, self.index = graph, index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.graph(x)
        return out[self.index] if isinstance(out, (tuple, list)) else out


def bundle_dir(run: Path) -> Path:
    return Path(run) / "export" / BUNDLE


def export_bundle(run: str | Path, checkpoint: str = "best", inputs: list[Path] | None = None) -> dict[str, Any]:
    """Write RUN/export/monai_bundle/ after checking the TorchScript network against PyTorch."""
    from medcnn.export.onnx import torch_model

    run = Path(run)
    task = run_task(run, "export", checkpoint)
    model = torch_model(run, checkpoint)
    plan = model.plan
    graph, example, _, _, out_names, info = task.export_graph(model)
    index = out_names.index("probabilities") if "probabilities" in out_names else 0
    net = _SingleOutput(graph, index).eval()
    with torch.no_grad():
        try:
            traced = torch.jit.trace(net, example, check_trace=True)
        except Exception as e:  # noqa: BLE001 - tracing raises many types; the user gets one line
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ExportError(f"the {plan.model.name} network does not trace to TorchScript: {first[:300]}", run) from None
    meta = metadata(plan, info, out_names[index], _card(run))
    parity = _parity(task, run, model, traced, graph, index, inputs)
    if not parity["ok"]:
        raise ExportError(f"TorchScript and PyTorch disagree on {parity['inputs']}: max |difference| "
                          f"{parity['max_abs_diff']:.2e} > {TOLERANCE:g}; nothing written", run)
    dest = bundle_dir(run)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".bundle-") as tmp:
        root = Path(tmp) / BUNDLE
        for sub in ("configs", "models", "docs"):
            (root / sub).mkdir(parents=True)
        (root / "configs" / "metadata.json").write_text(json.dumps(meta, indent=1) + "\n")
        (root / "configs" / "inference.json").write_text(json.dumps(inference_config(plan, info), indent=1) + "\n")
        from monai.data import save_net_with_metadata

        save_net_with_metadata(traced, str(root / "models" / "model.ts"), meta_values=meta)
        torch.save(traced.state_dict(), root / "models" / "model.pt")
        (root / "docs" / "README.md").write_text(readme(plan, info, meta))
        shutil.rmtree(dest, ignore_errors=True)
        root.rename(dest)
    record = {"format": "monai-bundle", "path": str(dest), "task": plan.task, "parity": parity,
              "bytes": sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())}
    (dest / "configs" / "export.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def _parity(task, run: Path, model, traced, graph: nn.Module, index: int, inputs) -> dict[str, Any]:
    """The task's parity check (``medcnn export``'s), with the traced network in medcnn's inferer."""
    return check_parity(task, run, model, _Graphless(traced, graph, index), inputs)


class _Graphless(nn.Module):
    """The traced graph behaving as the network the inferer expects (``with_network`` takes the ONNX
    file's place the same way): the task's graph outputs, with the probabilities turned back into
    the logits the inferer applies its own temperature and softmax to."""

    exported = True  # holds the symmetries / residual and runs in float32, as an ONNX graph does

    def __init__(self, traced, graph: nn.Module, index: int):
        super().__init__()
        self.traced, self.index = traced, index
        self.temperature = float(getattr(graph, "temperature", 1.0))
        self.multilabel = bool(getattr(graph, "multilabel", False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.traced(x)
        if self.index == 0:
            return y
        # probabilities -> logits: the inferer divides by the temperature and applies softmax / sigmoid
        p = y.clamp_min(1e-12)
        z = torch.logit(p.clamp(max=1 - 1e-7)) if self.multilabel else torch.log(p)
        return z * self.temperature


def _card(run: Path) -> dict[str, Any]:
    """The numbers a bundle's metadata repeats: the run's test evaluation, when there is one."""
    f = Path(run) / "eval" / "test.json"
    if not f.is_file():
        return {}
    r = json.loads(f.read_text())
    keys = ("auc", "acc", "ece", "brier", "dice_mean", "psnr")
    return {k: r[k] for k in keys if isinstance(r.get(k), (int, float))} | \
        {f"{k}_ci95": r[f"{k}_ci95"] for k in keys if r.get(f"{k}_ci95")}


def _shape(dims) -> list:
    """medcnn's shape words ('8*h') as MONAI spatial shape expressions ('8*n')."""
    return [d if isinstance(d, int) else str(d).replace("*h", "*n").replace("*w", "*n") for d in dims]


def metadata(plan, info: dict, out_name: str, evaluated: dict) -> dict[str, Any]:
    import monai

    names = plan.class_names or [str(i) for i in range(plan.num_classes)]
    in_shape = _shape(info["input"]["shape"][2:])
    c = plan.preprocessing.channels
    modality = str(plan.fingerprint.get("modality", "") or "n/a")
    if plan.task == "classify":
        out = {"type": "probabilities", "format": "classes", "num_channels": plan.num_classes, "spatial_shape": [],
               "value_range": [0, 1], "channel_def": dict(enumerate(names))}
        value_range = [0, 1]
    elif plan.task == "segment":
        out = {"type": "image", "format": "labels", "num_channels": plan.num_classes, "spatial_shape": in_shape,
               "value_range": [], "channel_def": dict(enumerate(names))}
        value_range = []
    else:
        out = {"type": "image", "format": "magnitude", "num_channels": c, "spatial_shape": in_shape, "value_range": [],
               "channel_def": {i: "restored" for i in range(c)}}
        value_range = []
    return {
        "version": VERSION, "changelog": {VERSION: f"exported by medcnn {__version__}"},
        "monai_version": monai.__version__, "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__, "optional_packages_version": {"medcnn": __version__},
        "task": f"{plan.task}: {plan.data}", "name": f"medcnn {plan.task} ({Path(str(plan.data)).name})",
        "description": f"A medcnn {plan.task} model ({plan.model.name}) trained on {Path(str(plan.data)).name}; "
                       f"{info['input']['meaning']} in, {out_name} out.",
        "authors": "medcnn", "copyright": "the model's trainer; medcnn is Apache-2.0",
        "data_source": str(plan.data), "data_type": "image",
        "intended_use": "Research use only. Not a medical device; not for diagnosis or treatment decisions.",
        "eval_metrics": evaluated,
        "network_data_format": {
            "inputs": {"image": {"type": "image", "format": "magnitude", "modality": modality, "num_channels": c,
                                 "spatial_shape": in_shape, "dtype": "float32", "value_range": value_range,
                                 "is_patch_data": plan.task == "segment",
                                 "channel_def": {i: n for i, n in enumerate(
                                     plan.fingerprint.get("channel_names") or ["image"] * c)}}},
            "outputs": {"pred": {**out, "dtype": "float32", "is_patch_data": plan.task == "segment"}}},
        "medcnn": {"plan": plan.to_dict(), "outside_the_network": info.get("outside_the_graph", {})},
    }


def _intensity(plan) -> list[dict]:
    """The plan's intensity normalisation as MONAI transforms (the ones without an exact MONAI twin
    are stated in the README and left to the caller)."""
    norm = plan.preprocessing.normalization
    if norm == "uint8":
        return [{"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": 0.0, "a_max": 255.0, "b_min": 0.0, "b_max": 1.0}]
    if norm == "percentile_clip":
        return [{"_target_": "ScaleIntensityRangePercentilesd", "keys": "image", "lower": 0.5, "upper": 99.5,
                 "b_min": 0.0, "b_max": 1.0, "clip": True}]
    if norm == "zscore":
        return [{"_target_": "NormalizeIntensityd", "keys": "image", "nonzero": True, "channel_wise": True}]
    return []


def inference_config(plan, info: dict) -> dict[str, Any]:
    """configs/inference.json: a MONAI workflow over the image files in ``dataset_dir``."""
    size = list(plan.preprocessing.input_size)
    pre = [{"_target_": "LoadImaged", "keys": "image", "image_only": True, "reader": "PILReader", "reverse_indexing": False}
           if plan.spatial_dims == 2 else {"_target_": "LoadImaged", "keys": "image", "image_only": True},
           {"_target_": "EnsureChannelFirstd", "keys": "image"}, *_intensity(plan)]
    if plan.task == "classify":
        pre.append({"_target_": "Resized", "keys": "image", "spatial_size": size})
        inferer = {"_target_": "SimpleInferer"}
        saver = {"_target_": "ClassificationSaver", "output_dir": "@output_dir", "batch_transform":
                 "$lambda x: [xx['image'].meta for xx in x]", "output_transform": "$lambda x: [xx['pred'] for xx in x]"}
        post: list[dict] = []
    else:
        pre.append({"_target_": "EnsureTyped", "keys": "image"})
        if plan.task == "segment":
            sw = info["outside_the_graph"]["sliding_window"]
            inferer = {"_target_": "SlidingWindowInferer", "roi_size": sw["size"], "sw_batch_size": 4,
                       "overlap": sw["overlap"], "mode": "gaussian"}
            post = [{"_target_": "AsDiscreted", "keys": "pred", "argmax": True}]
        else:
            inferer = {"_target_": "SimpleInferer"}
            post = []
        saver = None
    config: dict[str, Any] = {
        "imports": ["$import glob", "$import os"],
        "bundle_root": ".", "output_dir": "$@bundle_root + '/eval'", "dataset_dir": "",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "network_def": "$torch.jit.load(@bundle_root + '/models/model.ts')",
        "network": "$@network_def.to(@device)",
        "datalist": "$[{'image': f} for f in sorted(glob.glob(@dataset_dir + '/*'))]",
        "preprocessing": {"_target_": "Compose", "transforms": pre},
        "dataset": {"_target_": "Dataset", "data": "@datalist", "transform": "@preprocessing"},
        "dataloader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": 1, "shuffle": False,
                       "num_workers": 0},
        "inferer": inferer,
        "postprocessing": {"_target_": "Compose", "transforms": post},
        "handlers": [saver] if saver else [],
        "evaluator": {"_target_": "SupervisedEvaluator", "device": "@device", "val_data_loader": "@dataloader",
                      "network": "@network", "inferer": "@inferer", "postprocessing": "@postprocessing",
                      "val_handlers": "@handlers", "amp": False},
        "initialize": ["$monai.utils.set_determinism(seed=0)"],
        "run": ["$@evaluator.run()"],
    }
    return config


def readme(plan, info: dict, meta: dict) -> str:
    outside = json.dumps(info.get("outside_the_graph", {}), indent=1)
    return f"""# {meta['name']}

Exported by medcnn {__version__} (`medcnn export RUN --format monai-bundle`). {meta['intended_use']}

Run it with MONAI alone:

    python -m monai.bundle run --config_file configs/inference.json --bundle_root . --dataset_dir IMAGES

Input: {info['input']['meaning']}, shape {info['input']['shape']}. The preprocessing in
configs/inference.json loads each file, puts channels first, scales intensities as the plan's
`{plan.preprocessing.normalization}` normalisation does and resizes to {list(plan.preprocessing.input_size)}.

Inside the network: {'ensemble members averaged, test-time symmetries, the fitted temperature and the softmax' if plan.task == 'classify' else 'the network on one window' if plan.task == 'segment' else 'the network with its residual'}.
What `medcnn predict` adds outside the network (not in this bundle unless the inferer above says so):

```json
{outside}
```
"""
