"""Networks built by name. Users add their own without forking:

    from medcnn.models import register_model

    @register_model("mynet")
    def mynet(spatial_dims, in_channels, num_classes, **kwargs):
        return MyNet(...)

and list the defining module under ``plugins:`` in the plan (it is imported before training
and before loading the run for prediction).
"""
from __future__ import annotations

import importlib
from typing import Callable

import torch
from torch import nn

from medcnn.errors import ConfigError
from medcnn.utils.plugins import import_plugins

Builder = Callable[..., nn.Module]
_MODELS: dict[str, Builder] = {}


def register_model(name: str) -> Callable[[Builder], Builder]:
    def deco(fn: Builder) -> Builder:
        _MODELS[name.lower()] = fn
        return fn

    return deco


def list_models() -> list[str]:
    _ensure_builtin()
    return sorted(_MODELS)


def model_options(name: str) -> set[str]:
    """The named keyword options of network ``name``'s builder (empty for an unknown name)."""
    import inspect

    _ensure_builtin()
    fn = _MODELS.get(name.lower())
    if fn is None:
        return set()
    skip = {"spatial_dims", "in_channels", "num_classes"}
    return {p.name for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in skip}


def options_kept(name: str, planned: dict, kwargs: dict) -> dict:
    """The options of network ``name``: ``kwargs`` without those of ``planned`` (another network's,
    chosen by a planner) that ``name``'s builder does not take. Options set on purpose stay, so a
    misspelt one is still refused when the network is built."""
    known = model_options(name)
    return {k: v for k, v in kwargs.items() if k in known or planned.get(k, object()) != v}


def load_plugins(modules: list[str]) -> None:
    """Import the plan's plugin modules (they register their networks)."""
    import_plugins(modules)


def create_model(name: str, spatial_dims: int, in_channels: int, num_classes: int, *,
                 mean: list[float] | None = None, std: list[float] | None = None, **kwargs) -> nn.Module:
    """Build ``name`` and prepend the input normalisation, so the network takes [0, 1] images. A
    three-channel ``mean`` / ``std`` for one-channel images feeds the network the grey image as three
    channels (a network with RGB weights, e.g. ImageNet's, sees R = G = B as it would for a grey photo)."""
    _ensure_builtin()
    if mean is not None and in_channels == 1 and len(mean) > 1:
        in_channels = len(mean)
    key = name.lower()
    if key not in _MODELS:
        import difflib

        near = difflib.get_close_matches(key, _MODELS, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else f" (available: {', '.join(sorted(_MODELS))})"
        raise ConfigError(f"unknown model {name!r}{hint}")
    try:
        net = _MODELS[key](spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes, **kwargs)
    except TypeError as e:
        raise ConfigError(f"model {name!r}: bad arguments {kwargs} ({e})") from None
    if mean is None:
        return net
    return nn.Sequential(Normalize(mean, std or [1.0] * len(mean), spatial_dims), net)


class Normalize(nn.Module):
    """(x - mean) / std per channel, as fixed buffers (saved with the weights, exported to ONNX). A
    one-channel input with several-channel buffers broadcasts to that many channels."""

    keep_on_transfer = True  # the target data's normalisation: pretrained weights never replace it

    def __init__(self, mean: list[float], std: list[float], spatial_dims: int):
        super().__init__()
        shape = (1, -1) + (1,) * spatial_dims
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(shape))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


_builtin_loaded = False


def _ensure_builtin() -> None:
    global _builtin_loaded
    if not _builtin_loaded:
        _builtin_loaded = True
        for module in ("medcnn.models.nets", "medcnn.models.squeezenet"):
            importlib.import_module(module)
