"""The default plan's rules, on the real MedMNIST files."""
import pytest

from conftest import require
from medcnn.data.classification import load_classification
from medcnn.planning import default_plan


@pytest.fixture(scope="module")
def plans(medmnist_dir):
    names = ("breastmnist", "pneumoniamnist", "bloodmnist", "organamnist", "adrenalmnist3d")
    return {n: default_plan(load_classification(str(require(medmnist_dir / f"{n}.npz"))), n) for n in names}


def test_mirroring_only_where_no_class_is_left_or_right(plans):
    assert plans["organamnist"].augment.flip is False  # kidney-left vs kidney-right
    assert all(plans[n].augment.flip for n in ("breastmnist", "pneumoniamnist", "bloodmnist", "adrenalmnist3d"))


def test_any_rotation_only_for_orientation_free_images(plans):
    assert plans["bloodmnist"].augment.rotate_deg == 180  # microscopy
    assert plans["pneumoniamnist"].augment.rotate_deg < 30 and plans["organamnist"].augment.rotate_deg < 30


def test_small_training_sets_get_stronger_augmentation(plans, medmnist_dir):
    assert all(plans[n].augment.preset == "light" for n in ("breastmnist", "pneumoniamnist", "organamnist"))
    tenth = load_classification(str(medmnist_dir / "breastmnist.npz")).label_subset(0.1, 0)  # 55 images
    small = default_plan(tenth, "breastmnist")
    assert small.augment.preset == "default" and small.augment.flip
    assert small.augment.rotate_deg > plans["breastmnist"].augment.rotate_deg


def test_budget_buys_epochs_then_ensemble_members(plans):
    breast, pneu, organ = plans["breastmnist"], plans["pneumoniamnist"], plans["organamnist"]
    assert breast.epochs == 50 and breast.ensemble == 5  # 546 images: epoch cap reached, budget left over
    assert pneu.ensemble == 1 and 25 <= pneu.epochs <= 40
    assert organ.ensemble == 2 and organ.epochs == 20  # 10, doubled for CutMix; multi-class: two members
    assert plans["bloodmnist"].epochs == 13 and plans["bloodmnist"].ensemble == 2  # 150k / 11959, no CutMix
    assert plans["adrenalmnist3d"].ensemble == 1


def test_28px_network_keeps_full_resolution(plans):
    kw = plans["pneumoniamnist"].model.kwargs
    assert kw["stem_stride"] == 1 and kw["widen_factor"] == 0.5


def test_balanced_class_weights_make_every_class_count_equally(plans):
    from medcnn.planning import balanced_class_weights

    counts = plans["pneumoniamnist"].fingerprint["class_counts"]["train"]
    w = balanced_class_weights(counts)
    assert [round(wi * c) for wi, c in zip(w, counts.values())] == [sum(counts.values()) // 2] * 2


def test_binary_tasks_get_balanced_weights_multiclass_none(plans):
    for n in ("breastmnist", "pneumoniamnist", "adrenalmnist3d"):
        counts = plans[n].fingerprint["class_counts"]["train"]
        w = plans[n].class_weights
        assert len(w) == 2 and w[0] * list(counts.values())[0] == pytest.approx(w[1] * list(counts.values())[1], rel=1e-3)
    assert plans["bloodmnist"].class_weights == [] and plans["organamnist"].class_weights == []


def test_no_task_gets_extra_regularisation(plans):
    # label smoothing + strong weight decay for multi-class tasks lost on validation (EXPERIMENTS.md)
    for n in ("bloodmnist", "organamnist", "breastmnist", "pneumoniamnist", "adrenalmnist3d"):
        assert plans[n].label_smoothing == 0.0 and plans[n].optim.weight_decay == 1e-4


def test_cutmix_for_multiclass_images_with_an_orientation(plans):
    assert plans["organamnist"].augment.cutmix == 1.0  # CT slices
    assert all(plans[n].augment.cutmix == 0.0 for n in ("bloodmnist", "breastmnist", "pneumoniamnist", "adrenalmnist3d"))


def test_test_time_views_follow_the_training_symmetries(plans):
    assert plans["bloodmnist"].tta == "dihedral"  # microscopy: any rotation or mirror
    # no mirroring (kidney-left / -right); the zoom views (tta: scale) raised test but not validation ACC
    assert plans["organamnist"].tta == "none"
    assert all(plans[n].tta == "flip" for n in ("breastmnist", "pneumoniamnist", "adrenalmnist3d"))
