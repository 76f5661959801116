"""The classification benchmark's pieces on a few hundred real images (not its numbers)."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import classify as bench  # noqa: E402
import official_recipe  # noqa: E402


def test_official_network_is_the_papers_resnet18():
    net = official_recipe.CifarResNet18(1, 2)
    assert sum(p.numel() for p in net.parameters()) == 11_173_962 - 2 * 9 * 64 - 8 * 513  # kuangliu CIFAR ResNet-18 (3 in, 10 out) with 1 in, 2 out
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 2)
    assert net.conv1.stride == (1, 1)  # full 28x28 in the first stage, as in the paper


def test_official_recipe_trains_and_selects_on_validation(breast_npz, monkeypatch):
    monkeypatch.setenv("MEDCNN_DATA", str(breast_npz.parents[1]))
    r = official_recipe.run("breastmnist", epochs=2, limit=128, log=lambda s: None)
    assert 1 <= r["best_epoch"] <= 2 and 0 <= r["test_auc"] <= 1 and r["images_per_second"] > 0


def _runs(aucs, accs, seconds=60.0):
    return [{"seed": i, "test_auc": a, "test_acc": c, "seconds": seconds, "images_per_second": 100.0,
             "model": "resnet18", "model_kwargs": {"stem_stride": 1, "widen_factor": 0.5}, "input": [28, 28],
             "epochs": 10, "precision": "bf16-mixed"} for i, (a, c) in enumerate(zip(aucs, accs))]


def test_summary_ratio_counts_only_runs_that_reach_the_paper(tmp_path):
    meta = {"commit": "abc", "command": "python bench/classify.py", "date": "2026-11-25"}
    official = {"seconds": 6000.0, "test_auc": 0.95, "test_acc": 0.86, "epochs": 100}
    rec = bench.summarise("pneumoniamnist", _runs([0.97, 0.90], [0.90, 0.80]), official, meta)
    assert rec["test_auc_mean"] == pytest.approx(0.935) and rec["runs_reaching_paper_r18"] == 1
    assert rec["time_ratio"] == pytest.approx(0.01) and rec["official_minutes"] == 100.0
    assert rec["paper_best_auc"] == 0.962 and rec["paper_best_acc"] == 0.884 and not rec["beats_paper_best"]

    results = tmp_path / "classify.json"
    bench.update_results(results, [rec])
    other = bench.summarise("breastmnist", _runs([0.95], [0.9]), None, meta)
    merged = bench.update_results(results, [other])
    assert [r["dataset"] for r in merged] == ["pneumoniamnist", "breastmnist"]
    assert json.loads(results.read_text())[1]["time_ratio"] is None

    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{bench.START}\nstale table\n{bench.END}\noutro\n")
    bench.update_readme(readme, merged)
    text = readme.read_text()
    assert "stale table" not in text and text.startswith("intro") and text.endswith("outro\n")
    assert "| breastmnist |" in text and "**0.950 ± 0.000**" in text and "0.010" in text


def test_paper_comparison_is_at_the_papers_precision():
    """The paper gives three decimals: a mean of 0.9976 meets its 0.998, 0.9974 does not."""
    meta = {"commit": "abc", "command": "python bench/classify.py", "date": "2026-12-02"}
    met = bench.summarise("organamnist", _runs([0.9975, 0.9977], [0.9515, 0.9509]), None, meta)
    assert met["test_auc_mean"] == pytest.approx(0.9976) and met["beats_paper_best"]
    assert "**0.998 ± 0.000**" in bench.table([met]) and "**0.951 ± 0.000**" in bench.table([met])
    missed = bench.summarise("organamnist", _runs([0.9974], [0.9523]), None, meta)
    assert not missed["beats_paper_best"] and "| 0.997 ± 0.000 |" in bench.table([missed])


def test_official_time_of_fewer_epochs_is_extrapolated_to_the_recipe():
    meta = {"commit": "abc", "command": "python bench/classify.py", "date": "2026-11-27"}
    # 10 epochs: 590 s of training + validation, 10 s of test evaluation -> 100 epochs take 5910 s
    official = {"seconds": 600.0, "train_seconds": 590.0, "test_auc": 0.9, "test_acc": 0.8, "epochs": 10}
    rec = bench.summarise("pneumoniamnist", _runs([0.97], [0.90], seconds=591.0), official, meta)
    assert rec["official_minutes"] == pytest.approx(98.5) and rec["time_ratio"] == pytest.approx(0.1)
    assert rec["official_extrapolated_from_epochs"] == 10
    assert "extrapolated from 10" in bench.table([rec]) and "AUC 0.900" not in bench.table([rec])
    full = bench.summarise("pneumoniamnist", _runs([0.97], [0.90]), {**official, "epochs": 100}, meta)
    assert full["official_minutes"] == 10.0 and full["official_extrapolated_from_epochs"] is None


def test_saved_seed_is_reused_only_for_the_same_code_and_overrides(tmp_path):
    import subprocess

    import common

    root = Path(__file__).resolve().parents[2]
    git = lambda *a: subprocess.run(["git", *a], cwd=root, capture_output=True, text=True).stdout.strip()
    head, first = git("rev-parse", "--short", "HEAD"), git("rev-list", "--max-parents=0", "HEAD")[:7]
    if not head:
        pytest.skip("not a git checkout")
    clean = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "src", "pyproject.toml", "bench/classify.py"],
                           cwd=root).returncode == 0
    saved = tmp_path / "seed0.json"
    common.save_record(saved, {"seed": 0, "commit": head, "plan_overrides": []})
    assert (common.load_reusable(saved, [], "bench/classify.py") is not None) == clean
    assert common.load_reusable(saved, ["epochs=3"], "bench/classify.py") is None  # other overrides
    if not head.startswith(first) and not first.startswith(head):  # (a shallow clone has one commit)
        common.save_record(saved, {"seed": 0, "commit": first, "plan_overrides": []})
        assert common.load_reusable(saved, [], "bench/classify.py") is None  # the first commit's code differs
    common.save_record(saved, {"seed": 0, "commit": head + "-dirty", "plan_overrides": []})
    assert common.load_reusable(saved, [], "bench/classify.py") is None


def test_seed_predictions_give_the_records_intervals(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    runs = []
    for seed in (0, 1, 2):
        p1 = np.clip(labels * 0.6 + rng.random(300) * 0.4, 0, 1)
        bench.common.save_predictions(bench.predictions_file(tmp_path, "toy", seed), np.stack([1 - p1, p1], 1), labels)
        runs.append({"seed": seed})
    rec = bench.intervals("toy", runs, tmp_path, labels=labels)
    assert rec["predictions"] == [f"classify-toy-seed{s}.npz" for s in (0, 1, 2)]
    for k in ("auc", "acc", "ece", "brier"):
        lo, hi = rec[f"test_{k}_ci95"]
        assert 0 <= lo <= hi <= 1
    assert bench.intervals("toy", [{"seed": 7}], tmp_path, labels=labels) == {}  # no predictions kept: no interval
    assert "labels" not in np.load(bench.predictions_file(tmp_path, "toy", 0)).files  # the dataset's labels stay there
    with pytest.raises(SystemExit, match="other test labels"):
        bench.intervals("toy", runs, tmp_path, labels=1 - labels)
