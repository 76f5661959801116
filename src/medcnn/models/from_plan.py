"""A plan's network: the registered builder of ``plan.model.name`` with the plan's dimensions and
input channels; each task says how many outputs it needs (classes, or image channels)."""
from __future__ import annotations

import dataclasses

from torch import nn

from medcnn.models.registry import create_model, load_plugins, options_kept
from medcnn.plan import Plan


def network_from_plan(plan: Plan, out_channels: int, **extra) -> nn.Module:
    """``extra``: builder arguments beyond ``plan.model.kwargs`` (e.g. the input mean / std of a classifier)."""
    load_plugins(plan.plugins)
    return create_model(plan.model.name, plan.spatial_dims, plan.preprocessing.channels, out_channels, **extra,
                        **plan.model.kwargs)


def override_plan(plan: Plan, assignments: list[str]) -> Plan:
    """``plan.override(assignments)``; when they name another network, the planned network's options
    that the new one does not take are dropped (a ResNet's stem options would make SqueezeNet refuse
    to build), while options both take (e.g. a 28-px stem for ``resnet10``) and options set on purpose
    stay."""
    new = plan.override(assignments)
    if new.model.name.lower() == plan.model.name.lower():
        return new
    load_plugins(new.plugins)
    kept = options_kept(new.model.name, plan.model.kwargs, new.model.kwargs)
    return dataclasses.replace(new, model=dataclasses.replace(new.model, kwargs=kept))


def deep_supervision_weights(heads: int) -> list[float]:
    """Loss weights of the full-size output and the coarser heads of a deep-supervision U-Net
    (``unet(deep_supervision=k)``): 1, 1/2, 1/4, ... normalised (nnU-Net)."""
    w = [0.5 ** i for i in range(heads)]
    return [v / sum(w) for v in w]
