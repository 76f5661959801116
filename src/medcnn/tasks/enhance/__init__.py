"""The enhance task (see ``task.py``); registered in :mod:`medcnn.tasks.registry`."""
from medcnn.tasks.enhance.task import Enhance

__all__ = ["Enhance"]
