"""Load a trained model from its run folder and predict, with the preprocessing it was trained with.

Checkpoints are read with ``torch.load(..., weights_only=True)``: a checkpoint is tensors plus
a plain-data plan, and anything else (a pickled object) is refused.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medcnn.errors import InputError, RunFolderError
from medcnn.plan import Plan

REFER = "uncertain - refer"
CHECKPOINTS = {"best": "checkpoints/best.ckpt", "last": "checkpoints/last.ckpt"}


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise RunFolderError("checkpoint not found", path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unsupported content"
        raise InputError(f"refused: the checkpoint holds more than weights and plain data "
                         f"(weights_only load failed: {first})", path) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise InputError(f"not a readable checkpoint ({type(e).__name__})", path) from None


def _checkpoint_path(run: Path, checkpoint: str) -> Path:
    if checkpoint not in CHECKPOINTS:
        return Path(checkpoint)
    path = run / CHECKPOINTS[checkpoint]
    if not path.is_file():
        raise RunFolderError(f"has no {checkpoint} checkpoint ({CHECKPOINTS[checkpoint]}); did training finish an epoch?", run)
    return path


def _load_net(ckpt_path: Path) -> tuple[Plan, torch.nn.Module]:
    ckpt = load_checkpoint(ckpt_path)
    try:
        plan = Plan.from_dict(ckpt["hyper_parameters"]["plan"], source=str(ckpt_path))
        state = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    except (KeyError, TypeError):
        raise InputError("not a medcnn checkpoint (no plan / state_dict)", ckpt_path) from None
    if plan.task == "segment":
        from medcnn.tasks.segment import build_seg_network as build_network
    elif plan.task == "enhance":
        from medcnn.tasks.enhance import build_enhance_network as build_network
    else:
        from medcnn.tasks.classify import build_network
    net = build_network(plan)
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise InputError(f"weights do not fit the plan's network ({len(missing)} missing, "
                         f"{len(unexpected)} unexpected tensors)", ckpt_path)
    return plan, net


def load_run(run: str | Path, checkpoint: str = "best") -> tuple[Path, Plan, torch.nn.Module]:
    """(run folder, plan, network with the checkpoint's weights) of a run folder. An ensemble run
    (``ensemble: k > 1``) gives its own plan and the members' networks averaged (``MeanEnsemble``).
    A segmentation run's plan.yaml decides the inference settings (``plan.INFERENCE_FIELDS``)."""
    run = Path(run)
    if not run.is_dir():
        raise RunFolderError("run folder not found", run)
    top = Plan.load(run / "plan.yaml") if (run / "plan.yaml").is_file() else None
    if checkpoint in CHECKPOINTS and top is not None and top.ensemble > 1:
        from medcnn.models.ensemble import MeanEnsemble
        from medcnn.train.engine import member_dirs

        nets = [_load_net(_checkpoint_path(m, checkpoint))[1] for m in member_dirs(run, top)]
        return run, top, MeanEnsemble(nets, top.label_type)
    plan, net = _load_net(_checkpoint_path(run, checkpoint))
    if top is not None:  # test-time views, window and overlap as the run's plan.yaml says now
        from medcnn.plan import with_inference_settings

        plan = with_inference_settings(plan, top)
    return run, plan, net


def _temperature(run: Path, checkpoint: str) -> float:
    """The temperature `evaluate` fitted on validation for this checkpoint choice (1.0 if none)."""
    cal = run / "calibration.json"
    if not cal.is_file():
        return 1.0
    try:
        c = json.loads(cal.read_text())
        return float(c["temperature"]) if c.get("checkpoint") == checkpoint else 1.0
    except (ValueError, KeyError, TypeError):
        raise InputError("unreadable calibration file; delete it or re-run `medcnn evaluate`", cal) from None


class Predictor:
    """A trained classifier with its plan: ``Predictor.from_run("runs/x").predict_files([...])``."""

    def __init__(self, plan: Plan, net: torch.nn.Module, run_dir: Path | None = None, checkpoint: str = "",
                 temperature: float = 1.0):
        if plan.tta != "none" and not getattr(net, "exported", False):  # an ONNX graph holds its symmetries
            from medcnn.models.ensemble import SymmetryTTA

            net = SymmetryTTA(net, plan.tta, plan.label_type)
        self.plan, self.net, self.run_dir, self.checkpoint = plan, net.eval(), run_dir, checkpoint
        self.temperature = temperature  # from RUN/calibration.json, fitted on validation by `evaluate`
        # bfloat16 autocast where training used it (precision auto/bf16 on an AVX-512-bf16 CPU or a GPU; not 3D
        # classification on CPU): test AUC/ACC equal to fp32's at the 4th decimal on four runs, about 2x the
        # images/s (bench/results/EXPERIMENTS.md); weights channels_last in 2D, as the inputs are.
        from medcnn.train.engine import resolve_precision

        exported = getattr(net, "exported", False)
        self.bf16 = not exported and resolve_precision(plan.precision, plan.spatial_dims, plan.task) == "bf16-mixed"
        if plan.spatial_dims == 2 and not exported:
            self.net = self.net.to(memory_format=torch.channels_last)
        self._inference_net: torch.nn.Module | None = None

    @property
    def inference_net(self) -> torch.nn.Module:
        """What predictions run: the network with its batch norms folded into the convolutions (made on
        first use; ``self.net``, unfolded, is what Grad-CAM and export read)."""
        if self._inference_net is None:
            from medcnn.models.fold import folded_copy

            self._inference_net = self.net if getattr(self.net, "exported", False) else folded_copy(self.net)
        return self._inference_net

    @classmethod
    def from_run(cls, run: str | Path, checkpoint: str = "best", engine: str = "torch") -> "Predictor":
        """``checkpoint``: best | last | a .ckpt path. An ensemble run loads every member's checkpoint.
        ``engine="onnx"`` runs the run's ONNX export (``medcnn export``) in ONNX Runtime."""
        run = Path(run)
        if not run.is_dir() and checkpoint in CHECKPOINTS:
            raise RunFolderError("run folder not found", run)
        if engine == "onnx":
            from medcnn.infer.onnx_net import onnx_model

            plan, net = onnx_model(run, checkpoint)
            return cls(plan, net, run, f"{checkpoint} (onnx)", _temperature(run, checkpoint))
        if not run.is_dir():  # a checkpoint file given on its own
            plan, net = _load_net(_checkpoint_path(run, checkpoint))
            return cls(plan, net, None, checkpoint, 1.0)
        _, plan, net = load_run(run, checkpoint)  # every member's checkpoint for an ensemble run
        what = f"{checkpoint} of {plan.ensemble} members" if plan.ensemble > 1 else str(_checkpoint_path(run, checkpoint))
        return cls(plan, net, run, what, _temperature(run, checkpoint))

    # ---- arrays ------------------------------------------------------------------------
    def predict_array(self, images: np.ndarray | torch.Tensor, batch_size: int = 256) -> np.ndarray:
        """Probabilities, temperature-scaled when the run has been calibrated."""
        from medcnn.tasks.classify import predict_probs

        return predict_probs(self.inference_net, images, self.plan.label_type, batch_size, self.temperature, self.bf16)

    def predict_logits(self, images: np.ndarray | torch.Tensor, batch_size: int = 256) -> np.ndarray:
        from medcnn.tasks.classify import predict_logits

        return predict_logits(self.inference_net, images, batch_size, self.bf16)

    # ---- files -------------------------------------------------------------------------
    def preprocess(self, path: str | Path, image=None) -> torch.Tensor:
        """(C, *input_size) network input of a file (or of its already read ``image``)."""
        from medcnn.data.preprocess import image_to_tensor
        from medcnn.io import read_image

        pre = self.plan.preprocessing
        image = read_image(path) if image is None else image
        return image_to_tensor(image, pre.input_size, pre.channels, pre.normalization, path=str(path))

    def result(self, probs: np.ndarray, path: str | Path, max_uncertainty: float | None = None) -> dict[str, Any]:
        """One input's result from its probabilities: file, predicted class (or labels), every class
        probability. With ``max_uncertainty``, a case whose uncertainty (1 - top probability) is above
        it gets the prediction "uncertain - refer" instead of a class."""
        names = self.plan.class_names or [str(i) for i in range(self.plan.num_classes)]
        r: dict[str, Any] = {"file": str(path), "probabilities": {n: round(float(v), 6) for n, v in zip(names, probs)}}
        if self.plan.label_type == "multilabel":
            r["labels"] = [n for n, v in zip(names, probs) if v > 0.5]
        else:
            k = int(np.argmax(probs))
            r["prediction"], r["index"], r["confidence"] = names[k], k, round(float(probs[k]), 6)
            if max_uncertainty is not None and 1 - probs[k] > max_uncertainty:
                r["prediction"], r["abstained"] = REFER, True
        r["calibrated"] = self.temperature != 1.0
        return r

    def predict_files(self, paths: list[str | Path], max_uncertainty: float | None = None) -> list[dict[str, Any]]:
        """One :meth:`result` per input file."""
        return [self.result(self.predict_array(self.preprocess(p)[None])[0], p, max_uncertainty) for p in paths]
