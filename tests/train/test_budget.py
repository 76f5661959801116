"""Time budget (plan.max_minutes): the epoch arithmetic, and calibration on real data."""
import json

import pytest
import torch

from medcnn.data.classification import load_classification
from medcnn.plan import Plan
from medcnn.planning import default_plan
from medcnn.tasks import train
from medcnn.train.budget import MARGIN, fit_epochs, plan_epochs, shrink_steps, stretch_steps


def test_fit_epochs_arithmetic():
    # 10 steps x 1 s + 10 s validation = 20 s per epoch
    assert fit_epochs(50, 2.0, 10, 1.0, 10.0) == int(120 * MARGIN // 20)
    assert fit_epochs(3, 60.0, 10, 1.0, 10.0) == 3  # never more than planned
    assert fit_epochs(50, 0.001, 10, 1.0, 10.0) == 1  # at least one epoch
    assert fit_epochs(50, 2.0, 10, 1.0, 10.0, val_every=5) == int(120 * MARGIN // 12)


def test_stretched_epochs_fill_the_budget():
    # 2 min: 20 s epochs (10 x 1 s + 10 s validation) -> 5 epochs use 100 of 110.4 s; 12 steps fill it
    epochs = fit_epochs(50, 2.0, 10, 1.0, 10.0)
    steps = stretch_steps(epochs, 50, 2.0, 10, 1.0, 10.0)
    assert epochs == 5 and steps == int(120 * MARGIN / 5 - 10)
    assert epochs * (steps * 1.0 + 10.0) <= 120 * MARGIN < epochs * ((steps + 1) * 1.0 + 10.0)
    assert stretch_steps(3, 3, 60.0, 10, 1.0, 10.0) == 10  # everything fits: epochs stay as planned


def test_an_epoch_longer_than_the_budget_is_shortened():
    # LGG as measured: 1,000 patch steps of 0.822 s and 130 s of validation; a 6-minute budget
    assert fit_epochs(50, 6.0, 1000, 0.822, 130.0) == 1  # one epoch: 952 s, far over 360 s
    steps = shrink_steps(6.0, 1000, 0.822, 130.0)
    assert steps == int((360 * MARGIN - 130) / 0.822) and steps * 0.822 + 130 <= 360 * MARGIN
    assert shrink_steps(6.0, 100, 0.822, 130.0) == 100  # never longer than planned
    assert shrink_steps(1.0, 1000, 0.822, 130.0) == 1  # validation alone is over budget: one step


def test_budget_cuts_epochs_and_is_recorded(breast_npz, tmp_path):
    data = load_classification(str(breast_npz))
    plan = default_plan(data, str(breast_npz)).override(["epochs=400", "ensemble=1", "tta=none", "max_minutes=0.1"])
    run = train(plan, data, tmp_path / "run", progress=False)
    info = json.loads((run / "run.json").read_text())
    tb = info["time_budget"]
    assert tb["planned_epochs"] == 400 and 1 <= tb["epochs"] < 400
    assert tb["seconds_per_step"] > 0 and (tb["estimated_minutes"] <= 0.1 or tb["epochs"] == 1)
    assert Plan.load(run / "plan.yaml").epochs == tb["epochs"]
    assert len(json.loads((run / "metrics.json").read_text())["epochs"]) == tb["epochs"]


def test_segmentation_calibration_restores_weights(hippocampus_dir):
    from medcnn.data.segmentation import load_segmentation
    from medcnn.planning.segment import default_plan as seg_plan
    from medcnn.tasks.segment.module import SegmentationTask
    from medcnn.train.seg_data import segment_loaders

    data = load_segmentation(hippocampus_dir)
    plan = seg_plan(data, str(hippocampus_dir)).override(
        ["epochs=50", "max_minutes=1", "segment.patches_per_epoch=24",
         "segment.split={test_fraction: 0.9, val_fraction: 0.2, fold: null}"])
    train_loader, _, val_cases, _ = segment_loaders(plan, data)
    task = SegmentationTask(plan.to_dict())
    task.val_cases = val_cases
    before = {k: v.clone() for k, v in task.state_dict().items()}
    rec = plan_epochs(task, plan, train_loader, val_cases, len(val_cases), "32", "cpu")
    assert all(torch.equal(before[k], v) for k, v in task.state_dict().items())
    assert task.training  # back in training mode
    assert rec["validation_seconds"] > 0 and rec["steps_per_epoch"] == 24 // plan.batch_size
    assert 1 <= rec["epochs"] <= 50
    assert rec["estimated_minutes"] <= 1.0 or rec["epochs"] == 1
    if 1 < rec["epochs"] < 50:  # patch epochs are lengthened to use the budget
        assert rec["resized_steps_per_epoch"] >= rec["steps_per_epoch"]


@pytest.mark.parametrize("value", ["-1"])
def test_negative_budget_is_refused(value):
    from medcnn.errors import ConfigError

    with pytest.raises(ConfigError, match="max_minutes"):
        Plan().override([f"max_minutes={value}"])


def test_segmentation_run_trains_the_stretched_epochs(hippocampus_dir, tmp_path):
    """The patches actually drawn per epoch are the stretched count, and plan.yaml says so (resume)."""
    from medcnn.data.segmentation import load_segmentation
    from medcnn.planning.segment import default_plan as seg_plan

    data = load_segmentation(hippocampus_dir)
    plan = seg_plan(data, str(hippocampus_dir)).override(
        ["epochs=50", "max_minutes=0.25", "segment.patches_per_epoch=12", "segment.tta_flips=false",
         "segment.split={test_fraction: 0.95, val_fraction: 0.25, fold: null}"])
    run = train(plan, data, tmp_path / "run", progress=False)
    tb = json.loads((run / "run.json").read_text())["time_budget"]
    saved = Plan.load(run / "plan.yaml")
    assert saved.epochs == tb["epochs"] < 50
    assert saved.segment.patches_per_epoch == tb["resized_steps_per_epoch"] * plan.batch_size
    logged = json.loads((run / "metrics.json").read_text())["epochs"]
    assert len(logged) == tb["epochs"]
    assert logged[-1]["step"] == tb["epochs"] * tb["resized_steps_per_epoch"]
