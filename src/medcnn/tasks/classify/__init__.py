"""The classify task (see ``task.py``); registered in :mod:`medcnn.tasks.registry`."""
from medcnn.tasks.classify.task import Classify

__all__ = ["Classify"]
