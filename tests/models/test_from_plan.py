from medcnn.models import network_from_plan, override_plan
from medcnn.plan import ModelConfig, Plan

RESNET = {"stem_stride": 2, "stem_kernel": 7, "max_pool": True}


def test_another_network_keeps_only_the_planned_options_it_takes_and_builds():
    """`--set model.name=squeezenet1_1` on a plan made for a ResNet-18 (ISIC): the stem options go,
    an option given with the name stays, and the network builds."""
    plan = Plan(model=ModelConfig("resnet18", dict(RESNET)))
    squeeze = override_plan(plan, ["model.name=squeezenet1_1", "model.kwargs.upsample=2"])
    assert squeeze.model.kwargs == {"upsample": 2}
    assert network_from_plan(squeeze, 2) is not None
    assert override_plan(plan, ["model.name=resnet10"]).model.kwargs == RESNET
    assert override_plan(plan, ["seed=3"]).model.kwargs == RESNET
