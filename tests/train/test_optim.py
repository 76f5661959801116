"""Optimizers and learning-rate schedules from the plan."""
import pytest
import torch

from medcnn.errors import ConfigError
from medcnn.plan import Plan
from medcnn.train.optim import make_optimizer


def test_sgd_with_the_poly_schedule_of_nnunet():
    plan = Plan().override(["optim.name=sgd", "optim.lr=0.01", "optim.momentum=0.99", "optim.scheduler=poly"])
    out = make_optimizer([torch.nn.Parameter(torch.zeros(3))], plan, total_steps=100)
    opt, sched = out["optimizer"], out["lr_scheduler"]["scheduler"]
    assert opt.param_groups[0]["momentum"] == 0.99 and opt.param_groups[0]["nesterov"]
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.01) and lrs[50] == pytest.approx(0.01 * 0.5 ** 0.9)
    assert lrs[99] == pytest.approx(0.01 * 0.01 ** 0.9) and opt.param_groups[0]["lr"] == 0.0


def test_unknown_scheduler_is_a_config_error():
    with pytest.raises(ConfigError, match="poly"):
        make_optimizer([torch.nn.Parameter(torch.zeros(1))], Plan().override(["optim.scheduler=step"]), 10)


def test_gradient_clipping_bounds_every_step(breast_npz, tmp_path):
    """Plain SGD at lr 1 with the gradient norm clipped to 1e-12: the weights cannot move, so one
    epoch and two end at the same parameters; without clipping they move far apart."""
    from medcnn.data.classification import load_classification
    from medcnn.planning import default_plan
    from medcnn.tasks import train

    data = load_classification(str(breast_npz))
    base = ["ensemble=1", "tta=none", "max_minutes=0", "optim.name=sgd", "optim.momentum=0", "optim.weight_decay=0",
            "optim.lr=1.0", "optim.scheduler=none", "ema_decay=0", "augment.mixup=0", "augment.cutmix=0"]

    def params(clip: float, epochs: int) -> dict:
        plan = default_plan(data, str(breast_npz)).override([*base, f"epochs={epochs}", f"optim.grad_clip={clip}"])
        run = train(plan, data, tmp_path / f"clip{clip}-{epochs}", progress=False)
        sd = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        return {k: v.float() for k, v in sd.items() if v.is_floating_point() and "running" not in k}

    one, two = params(1e-12, 1), params(1e-12, 2)
    assert max(float((one[k] - two[k]).abs().max()) for k in one) < 1e-6
    free_one, free_two = params(0.0, 1), params(0.0, 2)
    assert max(float((free_one[k] - free_two[k]).abs().max()) for k in free_one) > 1e-3


def test_a_negative_gradient_clip_is_a_config_error():
    with pytest.raises(ConfigError, match="grad_clip"):
        Plan().override(["optim.grad_clip=-1"]).validate()
