"""A trained network from its run folder (or a checkpoint file), rebuilt by its task's builder."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from medcnn.errors import InputError, RunFolderError
from medcnn.models.ensemble import MeanEnsemble
from medcnn.plan import Plan
from medcnn.runs import CHECKPOINTS, RunFolder, checkpoint_weights

Builder = Callable[[Plan], torch.nn.Module]


def _network(plan: Plan, state: dict, build: Builder, source: Path) -> torch.nn.Module:
    net = build(plan)
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise InputError(f"weights do not fit the plan's network ({len(missing)} missing, "
                         f"{len(unexpected)} unexpected tensors)", source)
    return net


def load_network(run: str | Path, checkpoint: str, build: Builder,
                 inference_plan: Callable[[Plan, Plan], Plan] | None = None) -> tuple[RunFolder | None, Plan, torch.nn.Module, str]:
    """(run folder or None for a bare checkpoint file, plan, network with the checkpoint's weights,
    a label of what was loaded). ``checkpoint``: best | last | a .ckpt path. An ensemble run
    (``ensemble: k > 1``) gives its own plan and the members' networks averaged (``MeanEnsemble``);
    ``inference_plan(trained, run_plan)`` lets the run's plan.yaml adjust how a network predicts."""
    run = Path(run)
    if not run.is_dir():
        if checkpoint in CHECKPOINTS:
            raise RunFolderError("run folder not found", run)
        plan, state = checkpoint_weights(checkpoint)  # a checkpoint file given on its own
        return None, plan, _network(plan, state, build, Path(checkpoint)), checkpoint
    folder = RunFolder(run)
    top, weights = folder.weights(checkpoint)
    if len(weights) > 1:  # an ensemble's members
        files = folder.checkpoint_files(top, checkpoint)
        nets = [_network(p, s, build, f) for (p, s), f in zip(weights, files)]
        return folder, top, MeanEnsemble(nets, top.label_type), f"{checkpoint} of {top.ensemble} members"
    (plan, state), = weights
    path = folder.checkpoint(checkpoint)
    net = _network(plan, state, build, path)
    if top is not None and inference_plan is not None:  # e.g. test-time views as the run's plan.yaml says now
        plan = inference_plan(plan, top)
    return folder, plan, net, str(path)
