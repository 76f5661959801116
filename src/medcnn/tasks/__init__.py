"""Tasks: one object per task (classify, segment, enhance, pretrain, and plugins' tasks) answering
everything the CLI, the engine, export and the service ask of a task. See docs/architecture.md."""
from medcnn.tasks.base import Table, Task, TaskModule, TrainingSetup
from medcnn.tasks.registry import (
    choose_task,
    evaluate,
    get_task,
    load_model,
    load_plugins,
    register_task,
    run_task,
    task_names,
    task_of,
    train,
)

__all__ = ["Table", "Task", "TaskModule", "TrainingSetup", "choose_task", "evaluate", "get_task", "load_model",
           "load_plugins", "register_task", "run_task", "task_names", "task_of", "train"]
