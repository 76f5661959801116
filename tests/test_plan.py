import pytest

from medcnn.errors import ConfigError
from medcnn.plan import ModelConfig, Plan


def test_yaml_roundtrip(tmp_path):
    p = Plan(num_classes=3, class_names=["a", "b", "c"]).override(["optim.lr=3e-4", "model.kwargs.stem_stride=2"])
    path = p.save(tmp_path / "plan.yaml")
    q = Plan.load(path)
    assert q == p
    assert q.optim.lr == pytest.approx(3e-4)
    assert q.model.kwargs == {"stem_stride": 2}


@pytest.mark.parametrize("bad, msg", [
    (["epochs=0"], "epochs must be >= 1"),
    (["optim.nope=1"], "unknown plan field"),
    (["epochs=ten"], "wrong type"),
    (["precision=fp8"], "precision must be"),
    (["noequals"], "key=value"),
])
def test_bad_overrides(bad, msg):
    with pytest.raises(ConfigError, match=msg):
        Plan().override(bad)


def test_unknown_yaml_field_is_refused(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("task: classify\nepochz: 3\n")
    with pytest.raises(ConfigError, match="epochz"):
        Plan.load(f)


def test_not_yaml(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="YAML"):
        Plan.load(f)


def test_class_weights_are_checked():
    with pytest.raises(ConfigError, match="class_weights"):
        Plan(num_classes=3).override(["class_weights=[1.0, 2.0]"])
    assert Plan(num_classes=2).override(["class_weights=[0.7, 1.9]"]).class_weights == [0.7, 1.9]


def test_inference_window_defaults_to_the_training_patch():
    from medcnn.plan import Preprocessing, SegmentConfig, window_of

    assert window_of(SegmentConfig(patch_size=[32, 48, 32])) == [32, 48, 32]
    assert window_of(SegmentConfig(patch_size=[32, 48, 32], infer_patch_size=[40, 56, 40])) == [40, 56, 40]
    with pytest.raises(ConfigError, match="infer_patch_size"):
        Plan(task="segment", spatial_dims=3, preprocessing=Preprocessing(input_size=[32, 48, 32]),
             segment=SegmentConfig(patch_size=[32, 48, 32], infer_patch_size=[40, 56])).validate()


def test_preset_override_applies_the_preset():
    """`--set augment.preset=none` must switch augmentation off, not only rename it; a later
    single-field assignment still adjusts the preset."""
    plan = Plan()
    assert plan.augment.rotate_deg > 0
    off = plan.override(["augment.preset=none"])
    assert off.augment.preset == "none" and off.augment.p == 0.0 and off.augment.rotate_deg == 0.0
    heavy = plan.override(["augment.preset=heavy", "augment.flip=false"])
    assert heavy.augment.rotate_deg == 25.0 and heavy.augment.flip is False
    with pytest.raises(ConfigError, match="preset"):
        plan.override(["augment.preset=strong"])


def test_another_network_keeps_the_arguments_until_a_network_is_chosen():
    """The plan alone does not know which options a network takes: ``override`` keeps them
    (``medcnn.models.override_plan`` drops those the new network refuses)."""
    plan = Plan(model=ModelConfig("resnet18", {"stem_stride": 2, "max_pool": True}))
    assert plan.override(["model.name=squeezenet1_1"]).model.kwargs == {"stem_stride": 2, "max_pool": True}


@pytest.mark.parametrize("sets, msg", [
    (["segment.split.fold=cv"], "set ensemble to the number of folds"),
    (["ensemble=3", "segment.split={fold: cv, folds: 5}"], "folds \\(5\\) must equal ensemble \\(3\\)"),
    (["segment.split.fold=5"], "fold 0..4"),
    (["segment.split={fold: 1, folds: 1}"], "fold"),
    (["segment.split.fold=first"], "fold"),
])
def test_segmentation_folds_are_checked(sets, msg):
    from medcnn.plan import Preprocessing, SegmentConfig

    plan = Plan(task="segment", spatial_dims=3, preprocessing=Preprocessing(input_size=[32, 48, 32]),
                segment=SegmentConfig(patch_size=[32, 48, 32]))
    with pytest.raises(ConfigError, match=msg):
        plan.override(sets)
    assert plan.override(["ensemble=5", "segment.split.fold=cv"]).segment.split["fold"] == "cv"
    assert plan.override(["segment.split={fold: 2, folds: 3}"]).segment.split["fold"] == 2


def test_nsd_tolerances_name_labels_of_the_plan():
    from medcnn.plan import Preprocessing, SegmentConfig

    plan = Plan(task="segment", spatial_dims=3, num_classes=3, class_names=["background", "Anterior", "Posterior"],
                preprocessing=Preprocessing(input_size=[32, 48, 32]), segment=SegmentConfig(patch_size=[32, 48, 32]))
    assert plan.override(["segment.nsd_tolerance_mm={Anterior: 2}"]).segment.nsd_tolerance_mm == {"Anterior": 2}
    with pytest.raises(ConfigError, match="not a label of the plan"):
        plan.override(["segment.nsd_tolerance_mm={Hippocampus: 2}"])
    with pytest.raises(ConfigError, match="positive distance"):
        plan.override(["segment.nsd_tolerance_mm={Posterior: 0}"])


def test_an_enhancement_plan_averages_symmetric_views_but_never_zoomed_ones():
    plan = Plan(task="enhance", spatial_dims=2, val_metric="psnr")
    assert plan.override(["tta=dihedral"]).tta == "dihedral"
    with pytest.raises(ConfigError, match="changes its noise"):
        plan.override(["tta=scale"])
