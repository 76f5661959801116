"""A plan's network: the registered builder of ``plan.model.name`` with the plan's dimensions and
input channels; each task says how many outputs it needs (classes, or image channels)."""
from __future__ import annotations

from torch import nn

from medcnn.models.registry import create_model, load_plugins
from medcnn.plan import Plan


def network_from_plan(plan: Plan, out_channels: int, **extra) -> nn.Module:
    """``extra``: builder arguments beyond ``plan.model.kwargs`` (e.g. the input mean / std of a classifier)."""
    load_plugins(plan.plugins)
    return create_model(plan.model.name, plan.spatial_dims, plan.preprocessing.channels, out_channels, **extra,
                        **plan.model.kwargs)


def deep_supervision_weights(heads: int) -> list[float]:
    """Loss weights of the full-size output and the coarser heads of a deep-supervision U-Net
    (``unet(deep_supervision=k)``): 1, 1/2, 1/4, ... normalised (nnU-Net)."""
    w = [0.5 ** i for i in range(heads)]
    return [v / sum(w) for v in w]
