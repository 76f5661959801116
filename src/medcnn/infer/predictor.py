"""A trained classifier: files or arrays in, calibrated class probabilities out, with the
preprocessing it was trained with (``medcnn.tasks.load_model`` makes one from a run folder)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from medcnn.data.preprocess import image_to_tensor
from medcnn.infer import domain
from medcnn.infer.domain import DomainModel
from medcnn.io import read_image
from medcnn.models.ensemble import SymmetryTTA
from medcnn.models.fold import folded_copy
from medcnn.plan import Plan
from medcnn.utils.precision import resolve_precision

REFER = "uncertain - refer"
OUT_OF_DOMAIN = "out of domain - not predicted"


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 batches (kept compact in memory) -> float in [0, 1]."""
    return x.float().div_(255) if x.dtype == torch.uint8 else x.float()


def probabilities(logits: torch.Tensor, label_type: str) -> torch.Tensor:
    logits = logits.float()
    return torch.sigmoid(logits) if label_type == "multilabel" else torch.softmax(logits, dim=1)


def predict_logits(net: torch.nn.Module, images: np.ndarray | torch.Tensor, batch_size: int = 256,
                   bf16: bool = False) -> np.ndarray:
    """Network outputs (before softmax/sigmoid) for an array (N, C, *spatial), uint8 or float in [0, 1];
    ``bf16``: under bfloat16 autocast (outputs returned as float32)."""
    from contextlib import nullcontext

    net.eval()
    x_all = torch.as_tensor(images)
    channels_last = x_all.ndim == 4
    out = []
    cast = torch.autocast("cpu" if not x_all.is_cuda else "cuda", dtype=torch.bfloat16) if bf16 else nullcontext()
    with torch.inference_mode(), cast:
        for i in range(0, len(x_all), batch_size):
            x = to_float(x_all[i:i + batch_size])
            x = x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()
            out.append(net(x).float())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)


def predict_probs(net: torch.nn.Module, images: np.ndarray | torch.Tensor, label_type: str,
                  batch_size: int = 256, temperature: float = 1.0, bf16: bool = False) -> np.ndarray:
    """Class probabilities (optionally temperature-scaled) for an in-memory array."""
    logits = torch.from_numpy(predict_logits(net, images, batch_size, bf16))
    return probabilities(logits / temperature, label_type).numpy()


class Predictor:
    """A trained classifier with its plan: ``medcnn.tasks.load_model("runs/x").predict_files([...])``."""

    def __init__(self, plan: Plan, net: torch.nn.Module, run_dir: Path | None = None, checkpoint: str = "",
                 temperature: float = 1.0, domain: DomainModel | None = None):
        if plan.tta != "none" and not getattr(net, "exported", False):  # an ONNX graph holds its symmetries
            net = SymmetryTTA(net, plan.tta, plan.label_type)
        self.plan, self.net, self.run_dir, self.checkpoint = plan, net.eval(), run_dir, checkpoint
        self.temperature = temperature  # from RUN/calibration.json, fitted on validation by `evaluate`
        self.domain = domain  # RUN/domain.npz: what the training inputs look like (medcnn.infer.domain)
        self.allow_out_of_domain = False  # True: predict foreign inputs too (their verdict still says so)
        # bfloat16 autocast where training used it (precision auto/bf16 on an AVX-512-bf16 CPU or a GPU; not 3D
        # classification on CPU): test AUC/ACC equal to fp32's at the 4th decimal on four runs, about 2x the
        # images/s (bench/results/EXPERIMENTS.md); weights channels_last in 2D, as the inputs are.
        exported = getattr(net, "exported", False)
        self.bf16 = not exported and resolve_precision(plan.precision, cpu_bf16=plan.spatial_dims != 3) == "bf16-mixed"
        if plan.spatial_dims == 2 and not exported:
            self.net = self.net.to(memory_format=torch.channels_last)
        self._inference_net: torch.nn.Module | None = None

    def with_network(self, net: torch.nn.Module) -> "Predictor":
        """The same classifier around another network (e.g. its ONNX export)."""
        twin = Predictor(self.plan, net, self.run_dir, self.checkpoint, self.temperature, self.domain)
        twin.allow_out_of_domain = self.allow_out_of_domain
        return twin

    @property
    def inference_net(self) -> torch.nn.Module:
        """What predictions run: the network with its batch norms folded into the convolutions (made on
        first use; ``self.net``, unfolded, is what Grad-CAM and export read)."""
        if self._inference_net is None:
            self._inference_net = self.net if getattr(self.net, "exported", False) else folded_copy(self.net)
        return self._inference_net

    # ---- arrays ------------------------------------------------------------------------
    def predict_array(self, images: np.ndarray | torch.Tensor, batch_size: int = 256) -> np.ndarray:
        """Probabilities, temperature-scaled when the run has been calibrated."""
        return predict_probs(self.inference_net, images, self.plan.label_type, batch_size, self.temperature, self.bf16)

    def predict_logits(self, images: np.ndarray | torch.Tensor, batch_size: int = 256) -> np.ndarray:
        return predict_logits(self.inference_net, images, batch_size, self.bf16)

    # ---- files -------------------------------------------------------------------------
    def preprocess(self, path: str | Path, image=None) -> torch.Tensor:
        """(C, *input_size) network input of a file (or of its already read ``image``)."""
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

    @property
    def base_net(self) -> torch.nn.Module:
        """The plain network behind the predictions: no TTA wrapper, an ensemble's first member."""
        net = getattr(self.net, "net", self.net)  # SymmetryTTA
        members = getattr(net, "members", None)  # MeanEnsemble
        return members[0] if members is not None else net

    @property
    def feature_net(self) -> torch.nn.Module | None:
        """The network the domain check reads features from (None for an exported graph, which
        exposes no features)."""
        return None if getattr(self.net, "exported", False) else self.base_net

    def domain_verdict(self, image, x: torch.Tensor) -> dict[str, Any]:
        """How the input ``x`` (preprocessed from ``image``) compares with the training inputs."""
        return domain.check(self.domain, self.feature_net, x, domain.image_colourfulness(np.asarray(image.array)),
                            image.meta, self.plan.fingerprint.get("modality", "") if self.plan.fingerprint else "")

    def predict_file(self, path: str | Path, image=None, max_uncertainty: float | None = None,
                     allow_out_of_domain: bool | None = None, x: torch.Tensor | None = None) -> dict[str, Any]:
        """One input's :meth:`result` with its domain verdict; a foreign input gets no class
        unless ``allow_out_of_domain`` (default: the predictor's setting). ``image`` and its network
        input ``x`` may be given when the caller has them."""
        allow = self.allow_out_of_domain if allow_out_of_domain is None else allow_out_of_domain
        image = read_image(path) if image is None else image
        x = self.preprocess(path, image) if x is None else x
        r = self.result(self.predict_array(x[None])[0], path, max_uncertainty)
        r["domain"] = self.domain_verdict(image, x)
        if r["domain"]["verdict"] == domain.FOREIGN and not allow:
            r["prediction"], r["refused"] = OUT_OF_DOMAIN, True
            r.pop("labels", None)
        return r

    def predict_files(self, paths: list[str | Path], max_uncertainty: float | None = None) -> list[dict[str, Any]]:
        """One :meth:`predict_file` result per input file."""
        return [self.predict_file(p, max_uncertainty=max_uncertainty) for p in paths]
