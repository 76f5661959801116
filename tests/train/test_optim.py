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
