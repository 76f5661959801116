"""Dataset fingerprint -> default plan, per task (the rules nnU-Net's planner taught: decide from data).

``classify``: MedMNIST-style arrays, class folders, CSVs; ``segment``: image + label-map datasets.
"""
from medcnn.data.classification import choose_input_size
from medcnn.planning.classify import (
    ORIENTATION_FREE,
    augment_for,
    balanced_class_weights,
    default_plan,
    fingerprint,
    model_for,
)

__all__ = ["ORIENTATION_FREE", "augment_for", "balanced_class_weights", "choose_input_size", "default_plan",
           "fingerprint", "model_for"]
