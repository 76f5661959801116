"""Ensembles: members trained one after another, probabilities averaged, resumable member-wise."""
import json

import numpy as np
import pytest

from medcnn.data.classification import load_classification
from medcnn.planning import default_plan
from medcnn.runs import RunFolder
from medcnn.tasks import load_model, train


@pytest.fixture(scope="module")
def small_breast(breast_npz):
    data = load_classification(str(breast_npz))
    for s in ("train", "val"):
        data.images[s], data.labels[s] = data.images[s][:200], data.labels[s][:200]
    return data


def test_ensemble_averages_member_probabilities(small_breast, tmp_path):
    plan = default_plan(small_breast, "breastmnist").override(["epochs=1", "ensemble=2", "seed=3"])
    run = train(plan, small_breast, tmp_path / "ens", progress=False)
    info = json.loads((run / "run.json").read_text())
    assert info["ensemble"] == 2 and [m["seed"] for m in info["members"]] == [3, 1003]
    x, _ = small_breast.split("test")
    x = x[:40]
    probs = load_model(run).predict_array(x)
    members = [load_model(m).predict_array(x) for m in RunFolder(run).members(plan.ensemble)]
    assert not np.allclose(members[0], members[1], atol=1e-3)  # different seeds, different models
    np.testing.assert_allclose(probs, np.mean(members, axis=0), atol=1e-5)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)


def test_ensemble_resume_keeps_finished_members(small_breast, tmp_path):
    plan = default_plan(small_breast, "breastmnist").override(["epochs=1", "ensemble=2"])
    run = train(plan, small_breast, tmp_path / "ens", progress=False)
    m0, m1 = RunFolder(run).members(plan.ensemble)
    before = (m0 / "checkpoints" / "best.ckpt").stat().st_mtime_ns
    info = json.loads((m1 / "run.json").read_text())
    del info["finished"]  # as if killed while training member 2
    (m1 / "run.json").write_text(json.dumps(info))
    train(plan, small_breast, run, resume=True, progress=False)
    assert (m0 / "checkpoints" / "best.ckpt").stat().st_mtime_ns == before
    assert "finished" in json.loads((m1 / "run.json").read_text())
