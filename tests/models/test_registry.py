import pytest
import torch
from torch import nn

from medcnn.errors import ConfigError
from medcnn.models import create_model, list_models, register_model


@pytest.mark.parametrize("name", ["resnet10", "resnet18", "densenet121"])
@pytest.mark.parametrize("dims", [2, 3])
def test_builtin_models_2d_3d(name, dims):
    net = create_model(name, dims, 1, 3, mean=[0.5], std=[0.5], **({"stem_stride": 2} if "resnet" in name else {}))
    size = 64 if name == "densenet121" else 28  # DenseNet's pooling needs >= 64 px
    x = torch.rand(2, 1, *([size if dims == 2 else 32] * dims)) if name == "densenet121" else torch.rand(2, 1, *([28] * dims))
    assert net.eval()(x).shape == (2, 3)


def test_user_registered_model():
    @register_model("tiny-test-net")
    def tiny(spatial_dims, in_channels, num_classes, width=4):
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        pool = nn.AdaptiveAvgPool2d(1) if spatial_dims == 2 else nn.AdaptiveAvgPool3d(1)
        return nn.Sequential(conv(in_channels, width, 3), pool, nn.Flatten(), nn.Linear(width, num_classes))

    assert "tiny-test-net" in list_models()
    net = create_model("tiny-test-net", 2, 3, 5, width=8)
    assert net(torch.rand(1, 3, 28, 28)).shape == (1, 5)


def test_unknown_model_suggests():
    with pytest.raises(ConfigError, match="did you mean 'resnet18'"):
        create_model("resnet81", 2, 1, 2)


def test_normalize_is_inside_the_network():
    net = create_model("resnet10", 2, 1, 2, mean=[0.25], std=[0.5], stem_stride=2)
    assert torch.allclose(net.state_dict()["0.mean"], torch.tensor(0.25))


@pytest.mark.parametrize("dims", [2, 3])
def test_resolution_options_change_the_last_stage(dims):
    """upsample=2 doubles every stage's resolution; last_stride=1 keeps the last stage at the third's."""
    def last_stage_shape(**kw):
        net = create_model("resnet18", dims, 1, 3, stem_stride=1, widen_factor=0.25, **kw).eval()
        feats = {}
        body = net[-1] if isinstance(net, nn.Sequential) else net
        body.layer4.register_forward_hook(lambda m, i, o: feats.update(x=o.shape))  # returns None
        assert net(torch.rand(1, 1, *([16] * dims))).shape == (1, 3)
        return feats["x"][2:]

    assert tuple(last_stage_shape()) == (2,) * dims
    assert tuple(last_stage_shape(upsample=2)) == (4,) * dims
    assert tuple(last_stage_shape(last_stride=1)) == (4,) * dims


def test_another_network_keeps_only_the_planned_options_it_takes():
    """`--model` on a planned half-width ResNet-18: a ResNet-34 keeps the 28-px stem, a DenseNet
    drops it, a SqueezeNet keeps `upsample`; an option set on purpose is never dropped."""
    from medcnn.models import options_kept

    planned = {"stem_stride": 1, "stem_kernel": 3, "max_pool": False, "widen_factor": 0.5}
    assert options_kept("resnet34", planned, planned) == planned
    assert options_kept("densenet121", planned, planned) == {}
    assert options_kept("squeezenet1_1", planned, {**planned, "upsample": 4}) == {"upsample": 4}
    assert options_kept("densenet121", planned, {**planned, "stem_strid": 2}) == {"stem_strid": 2}  # refused later
