"""Segmentation ensembles on real MSD Hippocampus cases: members on the same split, probabilities averaged."""
import json

import numpy as np
import pytest

from medcnn.data.segmentation import load_segmentation, read_case
from medcnn.planning.segment import default_plan
from medcnn.runs import RunFolder
from medcnn.tasks import load_model, train

TINY = ["epochs=1", "segment.patches_per_epoch=12", "segment.val_every=1", "segment.target_spacing=[]",
        "segment.split={test_fraction: 0.02, val_fraction: 0.02, fold: null, train_fraction: 0.1}"]


@pytest.fixture(scope="module")
def hippo_ensemble(tmp_path_factory, hippocampus_dir):
    data = load_segmentation(hippocampus_dir)
    plan = default_plan(data, str(hippocampus_dir)).override([*TINY, "ensemble=2", "seed=4", "max_minutes=0"])
    return data, plan, train(plan, data, tmp_path_factory.mktemp("runs") / "ens", progress=False)


def test_members_share_the_split_and_the_run_has_it(hippo_ensemble):
    _, plan, run = hippo_ensemble
    info = json.loads((run / "run.json").read_text())
    assert info["ensemble"] == 2 and [m["seed"] for m in info["members"]] == [4, 1004]
    top = json.loads((run / "split.json").read_text())
    for m in RunFolder(run).members(plan.ensemble):  # the train_fraction subset too, although the members' seeds differ
        assert json.loads((m / "split.json").read_text()) == top
    assert len(top["train"]) == round(0.1 * (260 - len(top["val"]) - len(top["test"])))


def test_ensemble_probabilities_are_the_members_mean(hippo_ensemble):
    """Exactly so where one window covers the case; where windows overlap or views are averaged, the
    ensemble is one network to them (its logits: log of the mean probability), as any network is."""
    data, plan, run = hippo_ensemble
    fit = next(c for c in data.cases if all(n <= w for n, w in zip(read_case(c, data.labels)[0].spatial_shape,
                                                                  plan.segment.patch_size)))
    image, _, _ = read_case(fit, data.labels)
    both = load_model(run)
    assert both.plan.ensemble == 2
    p = both.probabilities(image).numpy()
    members = [load_model(m).probabilities(image).numpy() for m in RunFolder(run).members(plan.ensemble)]
    assert not np.allclose(members[0], members[1], atol=1e-3)  # different seeds, different models
    np.testing.assert_allclose(p, np.mean(members, axis=0), atol=1e-2)  # bf16 inference
    np.testing.assert_allclose(p.sum(0), 1, atol=1e-4)


def test_evaluate_and_predict_read_an_ensemble(hippo_ensemble, hippocampus_dir, tmp_path):
    from medcnn.cli.main import main

    _, _, run = hippo_ensemble
    assert main(["evaluate", str(run), "--split", "test"]) == 0
    r = json.loads((run / "eval" / "test_segment.json").read_text())
    assert r["ensemble"] == 2 and r["n"] == len(json.loads((run / "split.json").read_text())["test"])
    src = hippocampus_dir / "imagesTs" / "hippocampus_002.nii.gz"
    assert main(["predict", str(run), str(src), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "hippocampus_002" / "mask.nii.gz").is_file()


def test_an_ensemble_of_enhancers_is_refused():
    from medcnn.errors import ConfigError
    from medcnn.plan import Plan

    plan = Plan(task="enhance", spatial_dims=2)
    plan.preprocessing.input_size = [64, 64]
    with pytest.raises(ConfigError, match="ensemble"):
        plan.override(["ensemble=2"])


def test_an_ensemble_with_shifted_views_exports_with_parity(hippo_ensemble, hippocampus_dir, tmp_path):
    """One ONNX graph holds both members; the shifted views stay outside it, as the sliding windows do."""
    import shutil

    from medcnn.export.onnx import export_run
    from medcnn.io import read_image
    from medcnn.plan import Plan

    _, _, src = hippo_ensemble
    run = tmp_path / "ens"
    shutil.copytree(src, run, ignore=shutil.ignore_patterns("export", "eval"))
    Plan.load(run / "plan.yaml").override(["segment.tta_shift=2"]).save(run / "plan.yaml")
    rec = export_run(run)
    assert rec["parity"]["ok"] and rec["ensemble"] == 2 and len(rec["checkpoint_sha256"]) == 2
    assert rec["outside_the_graph"]["shifted_views_voxels"] == 2
    image = read_image(sorted((hippocampus_dir / "imagesTs").glob("*.nii.gz"))[0])
    ref = load_model(run)
    ref.bf16 = False
    p_torch, p_onnx = ref.probabilities(image), load_model(run, engine="onnx").probabilities(image)
    assert float((p_torch - p_onnx).abs().max()) <= 1e-4


def test_a_cross_validation_ensemble_validates_out_of_fold(tmp_path, hippocampus_dir, capsys):
    """`fold: cv`: member i validates on fold i and trains on the others; the run's validation cases are
    all non-test cases, each predicted by the member that did not train on it; test cases by both."""
    import csv

    from medcnn.cli.main import main

    data = load_segmentation(hippocampus_dir)
    cv = ["epochs=1", "segment.patches_per_epoch=12", "segment.target_spacing=[]", "ensemble=2", "seed=4",
          "max_minutes=0", "segment.split={test_fraction: 0.95, fold: cv}"]
    plan = default_plan(data, str(hippocampus_dir)).override(cv)
    run = train(plan, data, tmp_path / "cv", progress=False)
    top = json.loads((run / "split.json").read_text())
    members = [json.loads((m / "split.json").read_text()) for m in RunFolder(run).members(plan.ensemble)]
    assert top["folds"] == [m["val"] for m in members] and all(m["test"] == top["test"] for m in members)
    for m in members:
        assert not set(m["train"]) & set(m["val"]) and sorted(m["train"] + m["val"]) == top["val"]
    assert len(top["val"]) == 260 - len(top["test"]) and not set(top["folds"][0]) & set(top["folds"][1])

    assert main(["evaluate", str(run), "--split", "val"]) == 0
    r = json.loads((run / "eval" / "val_segment.json").read_text())
    assert r["out_of_fold"] and r["n"] == len(top["val"])
    assert "each case out-of-fold" in " ".join(capsys.readouterr().out.split())
    rows = {row["case"]: row for row in csv.DictReader(open(run / "eval" / "val_cases.csv"))}
    both = load_model(run)
    for i, m in enumerate(RunFolder(run).members(plan.ensemble)):  # the first case of each fold: its own member's prediction
        case = next(c for c in data.cases if c.id == top["folds"][i][0])
        image, _, _ = read_case(case, data.labels)
        sizes = []
        for seg in (load_model(m), both):
            seg.post = r["postprocess"]["postprocess"]
            label = seg.segment(image).label.array[0]
            sizes.append([float((label == k).sum()) for k in (1, 2)])  # 1 mm voxels: mm³
        assert sizes[0] != sizes[1]
        assert sizes[0] == [float(rows[case.id][f"{n}_pred_size"]) for n in ("Anterior", "Posterior")]
