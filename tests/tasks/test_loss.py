"""The training loss honours the plan's class weights."""
import torch
import torch.nn.functional as F

from medcnn.plan import Plan
from medcnn.tasks.classify import ClassificationTask


def test_weighted_cross_entropy():
    plan = Plan(num_classes=2, label_type="binary", class_weights=[3.0, 1.0]).validate()
    task = ClassificationTask(plan.to_dict())
    logits, y = torch.tensor([[2.0, -1.0], [0.5, 0.2], [-1.0, 1.0]]), torch.tensor([1, 0, 1])
    expected = F.cross_entropy(logits, y, weight=torch.tensor([3.0, 1.0]))
    assert torch.isclose(task.loss(logits, y), expected)
    assert not torch.isclose(expected, F.cross_entropy(logits, y))
