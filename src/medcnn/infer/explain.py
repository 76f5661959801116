"""Where a classifier looked: Grad-CAM and occlusion sensitivity from MONAI's ``visualize``.

Maps are computed on the network a run folder holds (for an ensemble: its first member; test-time
augmentation is not applied), for the predicted class unless another is asked, upsampled to the
network's input and scaled to [0, 1] per image. Grad-CAM uses the last convolutional stage
(``layer4`` of a ResNet, else the last convolution); occlusion slides a patch of the image's mean
over it and records how much the class probability drops.
"""
from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medcnn.errors import ConfigError, InputError
from medcnn.io.image import Image
from medcnn.io.nifti import write_nifti
from medcnn.utils.files import atomic_savefig

METHODS = ("gradcam", "occlusion")
_CAMS: "weakref.WeakKeyDictionary[nn.Module, object]" = weakref.WeakKeyDictionary()


def target_layer(net: nn.Module) -> str:
    """Name of the module Grad-CAM reads: a ResNet's last stage, else the last convolution."""
    names = [n for n, _ in net.named_modules()]
    stages = [n for n in names if n.split(".")[-1] == "layer4"]
    if stages:
        return stages[-1]
    convs = [n for n, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))]
    if not convs:
        raise ConfigError("the network has no convolution to explain with Grad-CAM; use --method occlusion")
    return convs[-1]


def base_network(predictor) -> nn.Module:
    """The plain network behind a Predictor (no TTA wrapper; an ensemble's first member)."""
    return predictor.base_net


def saliency(net: nn.Module, x: torch.Tensor, method: str = "gradcam", class_idx: int | None = None) -> np.ndarray:
    """(B, C, *spatial) float input -> (B, *spatial) maps in [0, 1] for ``class_idx`` (default: predicted)."""
    from monai.visualize import GradCAM, OcclusionSensitivity

    net = net.eval()
    x = x.float()
    if method == "gradcam":
        # one GradCAM per network: MONAI registers hooks when one is made and never removes them, so a new
        # one per call piled up hooks (and the tensors they keep) with every image a server explained
        cam = _CAMS.get(net)
        if cam is None:
            cam = _CAMS[net] = GradCAM(nn_module=net, target_layers=target_layer(net))
        try:
            with torch.enable_grad():
                maps = cam(x.clone().requires_grad_(True), class_idx=class_idx)
        finally:
            hooks = cam.nn_module
            hooks.activations.clear(), hooks.gradients.clear()
            hooks.score = None
            net.zero_grad(set_to_none=True)
        return maps[:, 0].detach().numpy()
    if method == "occlusion":
        size = [max(2, s // 4) for s in x.shape[2:]]  # a quarter of the image, windows at half-mask steps
        occ = OcclusionSensitivity(nn_module=net, mask_size=size, n_batch=64, verbose=False, overlap=0.5)
        out = []
        with torch.no_grad():
            for i in range(len(x)):
                m, _ = occ(x[i:i + 1])  # (1, K, *spatial): class probability with each region occluded
                k = class_idx if class_idx is not None else int(torch.softmax(net(x[i:i + 1]).float(), 1).argmax())
                drop = -m[0, k].float()
                drop = drop - drop.min()
                out.append((drop / drop.max().clamp_min(1e-8)).numpy())
        return np.stack(out)

    raise ConfigError(f"unknown explanation method {method!r} (one of {', '.join(METHODS)})")


def save_overlay(image: np.ndarray, heat: np.ndarray, path: Path, title: str) -> Path:
    """Image (C, H, W) in [0, 1] beside the image with the map overlaid (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img = np.moveaxis(image, 0, -1) if image.shape[0] == 3 else image[0]
    fig, axes = plt.subplots(1, 2, figsize=(6, 3.2))
    for ax in axes:
        ax.imshow(np.clip(img, 0, 1), cmap=None if img.ndim == 3 else "gray")
        ax.set_xticks([]), ax.set_yticks([])
    axes[1].imshow(heat, cmap="jet", alpha=0.45, vmin=0, vmax=1)
    axes[0].set_title("input", fontsize=8), axes[1].set_title(title, fontsize=8)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
    return path


def write_explanation(image: np.ndarray, heat: np.ndarray, base: Path, title: str) -> dict[str, Path]:
    """The network input (C, *S) beside its map (*S) as ``base``.png; a volume shows its middle slice and
    also gets the map as ``base``.nii.gz (on the network's input grid)."""
    files = {}
    if heat.ndim == 3:
        files["nifti"] = write_nifti(Image(heat[None].astype(np.float32), np.eye(4)), base.with_name(base.name + ".nii.gz"))
        z = heat.shape[-1] // 2
        image, heat = image[..., z], heat[..., z]
    files["png"] = save_overlay(image, heat, base.with_name(base.name + ".png"), title)
    return files


def explain_files(pred, inputs: list[Path], out_dir: Path, method: str = "gradcam",
                  class_name: str | None = None) -> list[dict[str, Any]]:
    """Per input: ``<stem>_<method>.png`` (2D; 3D: the middle slice, plus the map as NIfTI), from the
    classifier ``pred`` (a :class:`medcnn.infer.predictor.Predictor`)."""
    run = pred.run_dir
    names = pred.plan.class_names
    k = None
    if class_name is not None:
        if class_name not in names:
            raise InputError(f"no class {class_name!r} in this model (classes: {', '.join(names)})", run)
        k = names.index(class_name)
    net = base_network(pred)
    results = []
    for path in inputs:
        x = pred.preprocess(path)[None].float()  # [0, 1], the network's input size
        probs = pred.predict_array(x)[0]
        cls = k if k is not None else int(np.argmax(probs))
        heat = saliency(net, x, method, cls)[0]
        stem = Path(path).resolve().name.split(".")[0] or "input"  # never ".." or empty: stays in out_dir
        title = f"{method}: {names[cls] if names else cls} (p={probs[cls]:.2f})"
        files = {kind: str(f) for kind, f in write_explanation(x[0].numpy(), heat, out_dir / f"{stem}_{method}", title).items()}
        results.append({"file": str(path), "class": names[cls] if names else cls, "probability": float(probs[cls]),
                        "method": method, "outputs": files})
    return results
