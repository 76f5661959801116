"""The training loss honours the plan's class weights."""
import torch
import torch.nn.functional as F

from medcnn.plan import Plan
from medcnn.tasks.classify.module import ClassificationTask


def test_weighted_cross_entropy():
    plan = Plan(num_classes=2, label_type="binary", class_weights=[3.0, 1.0]).validate()
    task = ClassificationTask(plan.to_dict())
    logits, y = torch.tensor([[2.0, -1.0], [0.5, 0.2], [-1.0, 1.0]]), torch.tensor([1, 0, 1])
    expected = F.cross_entropy(logits, y, weight=torch.tensor([3.0, 1.0]))
    assert torch.isclose(task.loss(logits, y), expected)
    assert not torch.isclose(expected, F.cross_entropy(logits, y))


def test_deep_supervision_weights_the_heads():
    """With deep supervision the loss is the 1, 1/2, 1/4-weighted mean of the heads' Dice+CE."""
    from medcnn.plan import ModelConfig, SegmentConfig
    from medcnn.tasks.segment.module import SegmentationTask, dice_ce_loss

    plan = Plan(task="segment", num_classes=3, spatial_dims=3, class_names=["bg", "a", "b"],
                model=ModelConfig("unet", {"filters": [4, 8, 16], "strides": [1, 2, 2], "deep_supervision": 1}),
                segment=SegmentConfig(patch_size=[16, 16, 16]))
    plan.preprocessing.input_size = [16, 16, 16]
    plan.augment.preset, plan.augment.p = "none", 0.0
    task = SegmentationTask(plan.validate().to_dict())
    torch.manual_seed(0)
    x = torch.randn(2, 1, 16, 16, 16)
    y = torch.randint(0, 3, (2, 1, 16, 16, 16))
    out = task(x)
    assert out.shape == (2, 2, 3, 16, 16, 16)
    expected = (dice_ce_loss(out[:, 0], y) + 0.5 * dice_ce_loss(out[:, 1], y)) / 1.5
    assert torch.isclose(task.step_loss((x, y, torch.empty(0))), expected, atol=1e-5)
    task.eval()
    assert task(x).shape == (2, 3, 16, 16, 16)  # inference: the main head only


def test_mixup_trains_on_the_mixed_labels():
    """With augment.cutmix on, the loss is the cross-entropy against the area-weighted label pair."""
    plan = Plan(num_classes=3, label_type="multiclass", label_smoothing=0.1).validate()
    plan.augment.p, plan.augment.cutmix = 0.0, 1.0
    task = ClassificationTask(plan.validate().to_dict())
    x = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    torch.manual_seed(3)
    loss = task.step_loss((x, y))
    torch.manual_seed(3)
    from medcnn.transforms.mix import mix_batch

    mixed, perm, lam = mix_batch(x.float() / 255, cutmix=1.0)
    target = lam[:, None] * F.one_hot(y, 3) + (1 - lam[:, None]) * F.one_hot(y[perm], 3)
    expected = F.cross_entropy(task(mixed).float(), target, label_smoothing=0.1)
    assert torch.isclose(loss, expected, atol=1e-5)
    assert not torch.isclose(loss, F.cross_entropy(task(mixed).float(), y, label_smoothing=0.1))
