"""The weight-averaging rule: warmed up, then the plan's decay."""
import pytest
import torch

from medcnn.train.callbacks import _ema_with_warmup


@pytest.mark.parametrize("n, decay, expected", [(0, 0.999, 0.1), (90, 0.999, 0.91), (10_000, 0.999, 0.999),
                                                (10_000, 0.99, 0.99)])
def test_ema_decay_warms_up(n, decay, expected):
    out = _ema_with_warmup(torch.zeros(3), torch.ones(3), torch.tensor(n), decay)
    assert torch.allclose(out, torch.full((3,), 1 - expected), atol=1e-6)
