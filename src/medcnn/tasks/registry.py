"""The task registry: every task medcnn knows, by name. The only module that imports the concrete
tasks; everything else asks it.

Plugins add tasks (and networks) without touching medcnn: a module that calls
``register_task(MyTask())`` is imported when it is named

- by an installed package's entry point in the group ``medcnn.plugins``,
- in the environment variable ``MEDCNN_PLUGINS`` (module names or .py files, separated by ``,``),
- with ``medcnn --plugin MODULE`` on the command line, or
- in a plan's ``plugins:`` list (so a run of a plugin task loads it for predict, evaluate, serve).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from medcnn.errors import ConfigError, MedcnnError
from medcnn.plan import TASK_SCHEMAS, Plan, TaskSchema, register_task_schema
from medcnn.runs import RunFolder, checkpoint_weights
from medcnn.tasks.base import Task
from medcnn.tasks.classify import Classify
from medcnn.tasks.enhance import Enhance
from medcnn.tasks.pretrain import Pretrain
from medcnn.tasks.segment import Segment
from medcnn.train.distributed import is_primary
from medcnn.train.engine import train as engine_train
from medcnn.utils.plugins import PLUGINS_ENV, import_plugins
from medcnn.zoo import resolve as resolve_run

_TASKS: dict[str, Task] = {}


def register_task(task: Task, schema: TaskSchema | None = None) -> Task:
    """Make ``task`` known by ``task.name`` (replacing a task of that name). ``schema``: what its plans
    hold (a plugin task's own settings live in ``plan.options``, checked by ``schema.check``); without
    one, a new task's plans have no section of their own."""
    if not task.name:
        raise ConfigError(f"{type(task).__name__} has no name")
    _TASKS[task.name] = task
    if schema is not None or task.name not in TASK_SCHEMAS:
        register_task_schema(task.name, schema or TaskSchema())
    return task


for _task in (Classify(), Segment(), Enhance(), Pretrain()):
    register_task(_task)


def load_plugins(specs: list[str] | tuple[str, ...] = ()) -> None:
    """Import the plugins named anywhere (see the module's docstring); they register their tasks."""
    import_plugins(specs)


def task_names() -> list[str]:
    load_plugins()
    return sorted(_TASKS)


def get_task(name: str) -> Task:
    load_plugins()
    if name not in _TASKS:
        raise ConfigError(f"task {name!r} is not available (available: {', '.join(sorted(_TASKS))}); a plugin "
                          f"task needs its plugin: medcnn --plugin MODULE, or ${PLUGINS_ENV}")
    return _TASKS[name]


def task_of(plan: Plan) -> Task:
    load_plugins(plan.plugins)
    return get_task(plan.task)


def choose_task(data: str, name: str, options: argparse.Namespace) -> Task:
    """The task of ``medcnn plan/train DATA --task NAME`` (``auto``: the first task, in their
    ``detect_order``, that recognises the data and options); checks the task's options."""
    load_plugins()
    if name == "auto":
        tasks = sorted(_TASKS.values(), key=lambda t: t.detect_order)
        task = next((t for t in tasks if t.detect(data, options)), None)
        if task is None:
            raise MedcnnError(f"cannot tell the task of {data}; pass --task ({', '.join(sorted(_TASKS))})")
    else:
        task = get_task(name)
    task.check_options(options)
    return task


def run_task(run: str | Path, command: str | None = None, checkpoint: str = "best") -> Task:
    """The task of a run folder (or of a checkpoint file, given as ``checkpoint`` or as ``run``); with
    ``command``, refuses a task that lacks that capability. A zoo model's name stands for its run folder."""
    run = resolve_run(run)
    if not run.is_dir() and checkpoint not in ("best", "last"):
        run = Path(checkpoint)  # a checkpoint file on its own
    if run.is_dir():  # its plan.yaml, else (a folder of checkpoints) the plan inside the checkpoint
        folder = RunFolder(run)
        plan = folder.plan() if folder.is_run() else checkpoint_weights(folder.checkpoint(checkpoint))[0]
    elif run.is_file():
        plan = checkpoint_weights(run)[0]
    else:
        raise MedcnnError("run folder not found", run)
    task = task_of(plan)
    if command is not None and command not in task.capabilities:
        raise MedcnnError(task.refusal(command), run)
    return task


def load_model(run: str | Path, checkpoint: str = "best", engine: str = "torch"):
    """The inferer of a trained run (a Predictor, Segmenter, Enhancer or a plugin task's):
    ``checkpoint`` best | last | a .ckpt path; ``engine`` torch | onnx (the run's ``medcnn export``).
    ``run`` may name a zoo model (``medcnn models --pretrained``)."""
    run = resolve_run(run)
    return run_task(run, "predict", checkpoint).load(run, checkpoint, engine)


def train(plan: Plan, data, run_dir: str | Path, **kw) -> Path:
    """Train ``plan`` on ``data`` into the run folder ``run_dir`` (``medcnn.train.engine.train``); a plan
    starting from named weights follows their network and input normalisation first."""
    from medcnn.transfer.catalog import plan_for_weights

    plan = plan_for_weights(plan)
    task = task_of(plan)
    run = engine_train(task, plan, data, Path(run_dir), **kw)
    if is_primary():
        task.after_training(run, plan, data)
    return run


def evaluate(run: str | Path, split: str = "test", checkpoint: str = "best", data: str | None = None,
             **options) -> dict:
    """``medcnn evaluate``: the run's task evaluates it (reports and figures in RUN/eval/)."""
    run = resolve_run(run)
    return run_task(run, "evaluate").evaluate(run, split, checkpoint, data, **options)
