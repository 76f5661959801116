"""The segment task (see ``task.py``); registered in :mod:`medcnn.tasks.registry`."""
from medcnn.tasks.segment.task import Segment

__all__ = ["Segment"]
