"""Batch norms folded into convolutions for inference: same outputs on real images, explanations untouched."""
import numpy as np
import torch
from torch import nn

from medcnn.models.fold import folded_copy
from medcnn.tasks import load_model


def test_folded_predictor_matches_the_network_on_real_images(breast_run, breast_npz):
    pred = load_model(breast_run)
    folded = pred.inference_net
    assert any(isinstance(m, nn.BatchNorm2d) for m in pred.net.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.as_tensor(np.load(breast_npz)["test_images"][:64])[:, None].float() / 255
    with torch.inference_mode():
        assert torch.allclose(pred.net(x), folded(x), atol=1e-4)
    pred.bf16 = False
    with torch.inference_mode():
        ref = torch.softmax(pred.net(x) / pred.temperature, 1).numpy()  # calibrated if evaluate ran
    assert np.abs(pred.predict_array(x) - ref).max() < 1e-5
    pred.bf16 = True  # bf16 autocast: close, same decisions
    assert (pred.predict_array(x).argmax(1) == ref.argmax(1)).mean() > 0.95


def test_a_network_without_batch_norm_is_left_as_it_is():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    net(torch.zeros(1, 1, 8, 8))
    folded = folded_copy(net)
    assert [type(m) for m in folded.modules()] == [type(m) for m in net.modules()]
