"""SqueezeNet 1.1: torchvision's layout, 2D only, a map left for the last Fire modules when upsampled,
and the stages the input-domain check reads."""
import pytest
import torch

from medcnn.errors import ConfigError
from medcnn.infer.domain import stage_modules
from medcnn.models import create_model


def test_layout_and_resolution():
    net = create_model("squeezenet1_1", 2, 3, 5)
    names = {k.rsplit(".", 1)[0] for k in net.state_dict() if k.startswith("features.")}
    assert names == {"features.0"} | {f"features.{i}.{c}" for i in (3, 4, 6, 7, 9, 10, 11, 12)
                                      for c in ("squeeze", "expand1x1", "expand3x3")}
    seen = {}

    def keep(name):
        def hook(module, inputs, out):
            seen[name] = out.shape
        return hook

    net.features[12].register_forward_hook(keep("map"))
    assert net(torch.rand(2, 3, 28, 28)).shape == (2, 5)
    assert seen["map"][-2:] == (1, 1)  # 28 px: nothing spatial left for the last Fire modules
    up = create_model("squeezenet1_1", 2, 3, 5, upsample=4)
    up[1].features[12].register_forward_hook(keep("up"))
    assert up(torch.rand(2, 3, 28, 28)).shape == (2, 5) and seen["up"][-2:] == (6, 6)
    assert len(stage_modules(net)) == 9  # the stem and the eight Fire modules


def test_3d_is_refused():
    with pytest.raises(ConfigError, match="squeezenet1_1 is a 2D network"):
        create_model("squeezenet1_1", 3, 1, 2)


def test_the_unet_on_its_encoder_keeps_any_input_size_and_its_names():
    net = create_model("squeezenet1_1_unet", 2, 3, 2)
    for shape in [(1, 3, 256, 256), (2, 3, 97, 131), (1, 3, 32, 32)]:
        assert net(torch.rand(shape)).shape == (shape[0], 2, *shape[2:])
    classifier = create_model("squeezenet1_1", 2, 3, 2)
    encoder = {k for k in net.state_dict() if k.startswith("features.")}
    assert encoder == {k for k in classifier.state_dict() if k.startswith("features.")}
    with pytest.raises(ConfigError, match="squeezenet1_1_unet is a 2D network"):
        create_model("squeezenet1_1_unet", 3, 1, 2)
