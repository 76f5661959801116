"""Data-parallel training on Lightning's DDP strategy: who this process is, and how a plan's batch
is shared between processes.

One plan, one run folder, whatever the number of processes. ``plan.batch_size`` is the *effective*
(global) batch: with W processes each takes ``batch_size / W`` samples of every step and DDP
averages the gradients, so the learning rate and the schedule stay those of the plan. A classifier's
global batch holds the same samples in the same order as a one-process run (the batch sampler deals
slices of one permutation), and BatchNorm statistics are synchronised, so W processes compute what
one process would, up to floating-point summation order.

Processes are started by Lightning itself (``--devices N`` on one machine: it re-runs the command
with LOCAL_RANK set), or by ``torchrun`` / SLURM (``--devices`` per node, ``--nodes`` machines;
Lightning reads their environment). Only the global rank 0 writes the run folder.
"""
from __future__ import annotations

import os

from medcnn.errors import ConfigError


def global_rank(devices_per_node: int = 1) -> int:
    """This process's rank among all training processes, from the launcher's environment; 0 for a
    plain run and for the parent process that Lightning's own launcher starts from. Known before
    Lightning is set up, so that only rank 0 prepares the run folder and each process builds its
    share of the data."""
    if "RANK" in os.environ:  # torchrun
        return int(os.environ["RANK"])
    if int(os.environ.get("SLURM_NTASKS", 1)) > 1 and "SLURM_PROCID" in os.environ:  # srun with several tasks
        return int(os.environ["SLURM_PROCID"])
    return int(os.environ.get("NODE_RANK", 0)) * devices_per_node + int(os.environ.get("LOCAL_RANK", 0))


def is_primary() -> bool:
    return global_rank() == 0


def world_size(devices: int | str, nodes: int) -> int:
    """The number of training processes a ``--devices/--nodes`` request starts (CPU: devices are processes)."""
    if isinstance(devices, str):
        if devices == "auto":
            return int(nodes)
        devices = int(devices)
    return max(1, int(devices)) * max(1, int(nodes))


def per_process_batch(batch_size: int, world: int) -> int:
    if batch_size % world:
        raise ConfigError(f"batch_size {batch_size} is the effective batch of all {world} processes and must be "
                          f"divisible by their number (each process takes batch_size / {world})")
    return batch_size // world


def strategy(world: int):
    """Lightning's strategy for ``world`` processes: none for one; DDP (gloo on CPU, NCCL on GPUs) otherwise.
    ``find_unused_parameters`` stays off: every task uses all of its network's parameters in each step."""
    if world <= 1:
        return "auto"
    from lightning.pytorch.strategies import DDPStrategy

    return DDPStrategy(find_unused_parameters=False)


def distributed_record(plan, devices: int | str, nodes: int) -> dict:
    """What run.json records about the processes, the batch and the learning rate."""
    world = world_size(devices, nodes)
    return {"processes": world, "devices_per_node": devices, "nodes": nodes,
            "effective_batch_size": plan.batch_size, "batch_per_process": per_process_batch(plan.batch_size, world),
            "lr": plan.optim.lr,
            "lr_rule": "unchanged: the plan's batch_size is the effective batch, shared between the processes"}
