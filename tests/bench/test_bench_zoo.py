"""The zoo builder on an entry tested on other data than its run's own test split (ISIC's official set)."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))
_spec = importlib.util.spec_from_file_location("bench_zoo", BENCH / "zoo.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


@pytest.mark.slow
def test_an_entry_tested_on_other_data_is_calibrated_on_its_own_validation_and_ships_a_portable_plan(
        breast_run, medmnist_dir, tmp_path, monkeypatch):
    from medcnn.plan import Plan

    monkeypatch.setenv("MEDCNN_DATA", str(medmnist_dir.parent))
    monkeypatch.setattr(bench, "ZOO", tmp_path / "zoo")
    spec = {**bench.ENTRIES["breastmnist-classifier"], "dataset": "breastmnist",
            "test_data": "medmnist/breastmnist.npz", "test_split": "test"}
    meta = {"commit": "test", "command": "pytest", "date": "today"}
    rec = bench.build("breast-elsewhere", spec, breast_run, tmp_path / "out", meta)

    assert rec["tried"][0]["dtype"] == "int8" and rec["inside_original_interval"]
    entry = tmp_path / "zoo" / "breast-elsewhere"
    card = json.loads((entry / "card.json").read_text())
    assert card["test"]["data"] == "medmnist/breastmnist.npz" and card["test"]["split"] == "test"
    assert Plan.load(entry / "plan.yaml").data == "breastmnist"  # the shipped plan names the data-root copy
    # the temperature was fitted on the run's own validation split before the other data was scored
    assert (entry / "calibration.json").is_file() and (entry / "domain.npz").is_file()
    again = bench.evaluate(entry, spec)
    assert again["auc"] == pytest.approx(card["test"]["value"], abs=2e-4)


@pytest.mark.slow
def test_a_heavy_entry_carries_its_first_cases_and_they_reproduce(hippo_run, tmp_path, monkeypatch):
    """An entry whose test split takes minutes to score ships the per-case Dice of its first cases;
    `evaluate --case` on the shipped entry gives them again."""
    import csv

    from medcnn.tasks import evaluate

    monkeypatch.setattr(bench, "ZOO", tmp_path / "zoo")
    spec = {**bench.ENTRIES["hippocampus-segmenter"], "check_cases": 2}
    rec = bench.build("hippo-check", spec, hippo_run, tmp_path / "out", {"commit": "test", "command": "pytest",
                                                                          "date": "today"})
    assert rec["inside_original_interval"]
    entry = tmp_path / "zoo" / "hippo-check"
    check = json.loads((entry / "card.json").read_text())["test"]["check"]["cases"]
    split = json.loads((entry / "split.json").read_text())["test"]
    assert list(check) == split[:2] and set(check[split[0]]) == {"Anterior_dice", "Posterior_dice"}
    evaluate(entry, "test", cases=list(check))
    with open(entry / "eval" / "test-subset_cases.csv", newline="") as fh:
        rows = {r["case"]: r for r in csv.DictReader(fh)}
    for case, scores in check.items():
        assert {k: float(rows[case][k]) for k in scores} == pytest.approx(scores, abs=2e-4)


def test_a_card_keeps_each_list_of_numbers_on_one_line():
    card = {"test": {"ci95": [0.9486, 0.9549], "check": {"probabilities": [[0.02, 9.5e-05, -1.0], [1, 0, 0]]}},
            "failure_modes": ["a, b", "c"]}
    text = bench.card_json(card)
    assert json.loads(text) == card
    assert '"ci95": [0.9486, 0.9549]' in text and "[0.02, 9.5e-05, -1.0]" in text and "[1, 0, 0]" in text
    assert '"failure_modes": [\n' in text  # lists of text stay one item per line
