"""Plan schema versions: version-1 plan dicts (three normalisation fields) migrate to version 2
(one normaliser); see medcnn.plan_migrations. Whole old run folders: tests/test_old_runs.py."""
import copy

import pytest
import yaml

from medcnn.errors import ConfigError
from medcnn.plan import Plan, Preprocessing, SegmentConfig
from medcnn.plan_migrations import SCHEMA_VERSION, migrate


def v1(task: str, **sections) -> dict:
    """A version-1 plan dict as medcnn 2fa2227 wrote it (the fields that matter here)."""
    size = [32, 32, 32] if task == "segment" else [28, 28] if task != "enhance" else [64, 64]
    d = {"task": task, "spatial_dims": len(size), "preprocessing": {"input_size": size, "channels": 1,
                                                                     "intensity": "none" if task in ("segment", "enhance")
                                                                     else "uint8", "mean": [0.0], "std": [1.0]}}
    for name, fields in sections.items():
        d.setdefault(name, {}).update(fields)
    if task == "segment":
        d.setdefault("segment", {}).update(patch_size=size)
    return d


def segment_plan() -> Plan:
    return Plan(task="segment", spatial_dims=3, preprocessing=Preprocessing(input_size=[16, 16, 16]),
                segment=SegmentConfig(patch_size=[16, 16, 16])).validate()


def normalization(d: dict) -> tuple[str, dict]:
    pre = Plan.from_dict(d).preprocessing
    return pre.normalization, pre.normalization_args


@pytest.mark.parametrize("intensity,name", [("uint8", "uint8"), ("percentile", "percentile_clip")])
def test_classification_intensity(intensity, name):
    assert normalization(v1("classify", preprocessing={"intensity": intensity})) == (name, {})


def test_segmentation_fields():
    assert normalization(v1("segment", segment={"normalization": "zscore", "ct_clip": [], "ct_mean_std": []})) == ("zscore", {})
    assert normalization(v1("segment", segment={"normalization": "rgb"})) == ("rgb", {})
    assert normalization(v1("segment")) == ("zscore", {})  # version 1's default
    ct = v1("segment", segment={"normalization": "ct", "ct_clip": [-100.0, 240.0], "ct_mean_std": [60.5, 41.0]})
    assert normalization(ct) == ("ct", {"clip": [-100.0, 240.0], "mean": 60.5, "std": 41.0})
    # empty lists meant the defaults: [-1024, 3071] HU, mean 0, std 1
    assert normalization(v1("segment", segment={"normalization": "ct", "ct_clip": [], "ct_mean_std": []})) == ("ct", {})


def test_restoration_pretraining_uses_the_segmentation_field():
    d = v1("segment", segment={"normalization": "rgb"})
    d.update(task="pretrain", pretext="restoration", num_classes=1)
    assert normalization(d) == ("rgb", {})
    contrastive = v1("pretrain")
    contrastive["pretext"] = "contrastive"
    assert normalization(contrastive) == ("uint8", {})


def test_enhancement_fields():
    ct = v1("enhance", enhance={"normalization": "window", "window": [-1000.0, 1500.0], "degradation": "lowdose-ct",
                                "level": [10000.0]})
    assert normalization(ct) == ("window", {"window": [-1000.0, 1500.0]})
    mr = v1("enhance", enhance={"normalization": "percentile", "window": [0.0, 1214.0]})
    assert normalization(mr) == ("percentile_affine", {})  # the window only served the CT degradations
    assert "window" not in Plan.from_dict(mr).to_dict()["enhance"]


def test_migration_copies_and_versions():
    d = v1("segment", segment={"normalization": "ct", "ct_clip": [0.0, 1.0], "ct_mean_std": [0.5, 0.2]})
    before = copy.deepcopy(d)
    out = migrate(d)
    assert d == before and out["schema_version"] == SCHEMA_VERSION == 2
    assert "intensity" not in out["preprocessing"] and not {"normalization", "ct_clip", "ct_mean_std"} & set(out["segment"])
    assert migrate(out) is out  # current plans pass through


def test_saved_plans_carry_the_version(tmp_path):
    path = segment_plan().save(tmp_path / "plan.yaml")
    d = yaml.safe_load(path.read_text())
    assert list(d)[0] == "schema_version" and d["schema_version"] == SCHEMA_VERSION
    assert d["preprocessing"]["normalization"] == "zscore"  # the task's default
    assert Plan.load(path).preprocessing.normalization_args == {}


@pytest.mark.parametrize("version,msg", [(3, "newer"), ("two", "whole number"), (0, "whole number")])
def test_unknown_versions_are_refused(version, msg):
    with pytest.raises(ConfigError, match=msg):
        Plan.from_dict({"schema_version": version})


def test_task_defaults_and_checks():
    assert Plan().preprocessing.normalization == "uint8"
    assert Plan(task="enhance").preprocessing.normalization_args == {"window": [0.0, 1.0]}
    with pytest.raises(ConfigError, match="normalization of a classify plan"):
        Plan().override(["preprocessing.normalization=zscore"])
    with pytest.raises(ConfigError, match="lowdose-ct simulates the scanner in HU"):
        Plan.from_dict(v1("enhance", enhance={"normalization": "percentile", "degradation": "lowdose-ct",
                                              "level": [10000.0]}))


@pytest.mark.parametrize("key", ["preprocessing.intensity", "segment.ct_clip", "enhance.window"])
def test_overrides_of_old_fields_say_where_they_went(key):
    plan = {"preprocessing": Plan(), "segment": segment_plan(), "enhance": Plan(task="enhance")}[key.split(".")[0]]
    with pytest.raises(ConfigError, match="since plan schema 2 it is preprocessing.normalization"):
        plan.override([f"{key}=1"])
