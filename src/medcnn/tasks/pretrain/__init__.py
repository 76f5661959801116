"""The pretrain task (see ``task.py``); registered in :mod:`medcnn.tasks.registry`."""
from medcnn.tasks.pretrain.task import Pretrain

__all__ = ["Pretrain"]
