"""Pretrained weights known by name: ``--pretrained squeezenet1_1.imagenet`` / ``resnet18.imagenet``, or
torchvision's name for the same weights (``SqueezeNet1_1_Weights.IMAGENET1K_V1``).

A name resolves to a file, first found wins:

1. the data root's copy (``$MEDCNN_DATA/pretrained/...``, the data mirror's layout), checked against
   its MD5;
2. torchvision's file in torch's usual cache (``torch.hub.get_dir()/checkpoints``), downloaded there
   when absent (not with ``MEDCNN_OFFLINE=1``) and checked against the SHA-256 prefix in its name,
   as torchvision checks it.

Weights carry the input convention they were trained with, so a plan that starts from them follows
it (:func:`plan_for_weights`): the network they fit, and their input normalisation (ImageNet's mean
and std on RGB in [0, 1]; a grey image is fed as three equal channels).
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medcnn.errors import ConfigError, InputError

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class WeightSet:
    name: str
    model: str  # the registered network the weights fit
    description: str
    url: str  # torchvision's file; its name holds the first 8 hex digits of its SHA-256
    local: str = ""  # a copy under the data root, used before the download
    local_md5: str = ""
    aliases: tuple[str, ...] = ()  # torchvision's names of these weights
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # the network options the weights need
    seg_model: str = ""  # the registered segmentation network whose encoder they fit ("": none)

    @property
    def cache_file(self) -> Path:
        import torch

        return Path(torch.hub.get_dir()) / "checkpoints" / self.url.rsplit("/", 1)[-1]

    @property
    def sha256_prefix(self) -> str:
        return self.url.rsplit("-", 1)[-1].split(".", 1)[0]


WEIGHT_SETS = (
    WeightSet("squeezenet1_1.imagenet", "squeezenet1_1",
              "SqueezeNet 1.1, ImageNet-1k",
              url="https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth",
              local="pretrained/squeezenet1_1_imagenet_features.pth", local_md5="0edd01c731038c21fbf1fc6dbe3b9943",
              aliases=("SqueezeNet1_1_Weights.IMAGENET1K_V1", "SqueezeNet1_1_Weights.DEFAULT"),
              seg_model="squeezenet1_1_unet"),
    WeightSet("resnet18.imagenet", "resnet18", "ResNet-18, ImageNet-1k (torchvision V1)",
              url="https://download.pytorch.org/models/resnet18-f37072fd.pth",
              aliases=("ResNet18_Weights.IMAGENET1K_V1", "ResNet18_Weights.DEFAULT"),
              model_kwargs={"stem_kernel": 7, "stem_stride": 2, "max_pool": True, "widen_factor": 1.0}),
)


def find(name: str) -> WeightSet | None:
    """The weight set called ``name`` (medcnn's or torchvision's name, any case), else None."""
    key = str(name).strip().lower()
    for ws in WEIGHT_SETS:
        if key == ws.name or key in (a.lower() for a in ws.aliases):
            return ws
    return None


def weights_file(ws: WeightSet, *, download: bool = True) -> Path:
    """The file holding ``ws`` (see the module docstring); InputError in one line when there is none."""
    from medcnn.data.fetch import data_root, file_md5, offline

    if ws.local:
        local = data_root() / ws.local
        if local.is_file():
            if ws.local_md5 and file_md5(local) != ws.local_md5:
                raise InputError(f"md5 is not the expected {ws.local_md5} for {ws.name}: the file is corrupt or "
                                 "another conversion; remove it to use torchvision's download", local)
            return local
    cached = ws.cache_file
    if cached.is_file():
        return cached
    where = f"{data_root() / ws.local} or {cached}" if ws.local else str(cached)
    if not download or offline():
        raise InputError(f"{ws.name}: no copy at {where} and downloads are off (MEDCNN_OFFLINE); "
                         f"download {ws.url} to {cached}", ws.name)
    _download(ws.url, cached, ws.sha256_prefix, ws.name, where)
    return cached


def _download(url: str, dest: Path, sha256_prefix: str, name: str, where: str) -> None:
    """torch.hub's download (a temporary file, renamed once its SHA-256 prefix matches)."""
    import torch

    dest.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s from %s", name, url)
    try:
        torch.hub.download_url_to_file(url, str(dest), hash_prefix=sha256_prefix, progress=False)
    except RuntimeError as e:  # torch.hub's hash mismatch
        raise InputError(f"{name}: the download from {url} is not the published file ({e})", name) from None
    except OSError as e:  # URLError is an OSError: offline, proxy, DNS
        raise InputError(f"{name}: no copy at {where} and the download from {url} failed "
                         f"({getattr(e, 'reason', e)}); download it there by hand", name) from None


def plan_for_weights(plan):
    """``plan`` made to follow its pretrained weights when ``transfer.pretrained`` names a weight set:
    their network with the options they need (the plan's other options stay where that network takes
    them, e.g. ``upsample``) and their input normalisation. A segmentation plan gets the U-Net built on
    their encoder and keeps its own normalisation (per-channel standardisation, as ImageNet's is). Any
    other source leaves the plan as it is."""
    ws = find(plan.transfer.pretrained) if plan.transfer.pretrained else None
    if ws is None:
        return plan
    segment = plan.task == "segment"
    if segment and not ws.seg_model:
        raise ConfigError(f"{ws.name} fits no segmentation network here (weights with one: "
                          f"{', '.join(w.name for w in WEIGHT_SETS if w.seg_model) or 'none'})")
    if plan.spatial_dims != 2:
        raise ConfigError(f"{ws.name} holds 2D weights for {ws.model}, a 2D network; this plan is "
                          f"{plan.spatial_dims}D")
    if plan.preprocessing.channels not in (1, len(ws.mean)):
        raise ConfigError(f"{ws.name} expects {len(ws.mean)}-channel (or grey) images; this plan has "
                          f"{plan.preprocessing.channels} channels")
    from medcnn.models import model_options

    name = ws.seg_model if segment else ws.model
    options = model_options(name)  # options this network takes stay (upsample), another network's go
    kept = {k: v for k, v in plan.model.kwargs.items() if k in options}
    model = dataclasses.replace(plan.model, name=name, kwargs={**kept, **({} if segment else ws.model_kwargs)})
    pre = plan.preprocessing if segment else dataclasses.replace(plan.preprocessing, mean=list(ws.mean),
                                                                 std=list(ws.std))
    if model != plan.model or pre != plan.preprocessing:
        log.info("the plan follows %s: model %s%s", ws.name, name, "" if segment else
                 f", its input normalisation (mean {list(ws.mean)}, std {list(ws.std)})")
    return dataclasses.replace(plan, model=model, preprocessing=pre)


def names() -> list[str]:
    return [ws.name for ws in WEIGHT_SETS]

