"""The transfer benchmark's summary: per-task metric, the issue-#6 goal line, merged parts."""
import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))
# by path: the name `transfer` is taken by the tests.transfer package
_spec = importlib.util.spec_from_file_location("bench_transfer", BENCH / "transfer.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def _runs(task, frac, init, scores):
    key = "test_dice" if task == "segment" else "test_auc"
    return [{"task": task, "dataset": "hippocampus" if task == "segment" else "breastmnist", "fraction": frac,
             "init": init, "init_kind": init, "seed": i, key: v, "n_train": 10, "commit": "abc", "command": "x"}
            for i, v in enumerate(scores)]


def test_summary_uses_each_tasks_metric_and_checks_the_goal():
    runs = (_runs("segment", 1.0, "scratch", [0.86, 0.87, 0.88]) + _runs("segment", 0.1, "scratch", [0.70, 0.72, 0.74])
            + _runs("segment", 0.1, "pretrained", [0.83, 0.84, 0.85]) + _runs("classify", 1.0, "scratch", [0.9, 0.9, 0.9])
            + _runs("classify", 0.1, "scratch", [0.80, 0.82, 0.84]) + _runs("classify", 0.1, "pretrained", [0.81, 0.83, 0.85]))
    recs = bench.summarise(runs, ("dataset", "fraction", "init_kind", "init"))
    seg = {(r["fraction"], r["init_kind"]): r for r in recs if r["task"] == "segment"}
    assert all(r["metric"] == "dice" for r in seg.values()) and seg[(0.1, "pretrained")]["mean"] == 0.84
    eff = recs
    # 0.84 / 0.87 = 96.6 % and +0.12 over scratch against a std of 0.016: met
    assert "96.6 %" in bench.goal(eff, "hippocampus") and "**met**" in bench.goal(eff, "hippocampus")
    # classification: 0.83 / 0.9 = 92 %, +0.01 within the spread: not met
    assert "**not met**" in bench.goal(eff, "breastmnist")
    text = bench.table(recs)
    assert "| hippocampus | test Dice | 10 % |" in text and "| breastmnist | test AUC | 100 % |" in text
    assert bench.goal([r for r in eff if r["fraction"] != 1.0], "hippocampus") == ""  # no full-label point yet


def test_seed_mean_interval_from_kept_predictions(tmp_path):
    import numpy as np

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 200)
    runs = []
    for seed in range(3):
        p1 = np.clip(0.3 * labels + 0.7 * rng.random(200), 0, 1)
        bench.common.save_predictions(tmp_path / f"c{seed}.npz", np.stack([1 - p1, p1], 1), labels)
        runs.append({"task": "classify", "predictions": f"c{seed}.npz"})
        rows = ["case,Anterior_dice,Posterior_dice,Anterior_nsd,Posterior_nsd"] + [
            f"c{i},{0.8 + 0.001 * i},{0.85},{0.9},{0.7 + 0.01 * seed}" for i in range(20)]
        (tmp_path / f"s{seed}.csv").write_text("\n".join(rows) + "\n")
    lo, hi = bench.seed_mean_ci(runs, tmp_path, labels)
    assert 0.5 < lo < hi <= 1
    seg = [{"task": "segment", "predictions": f"s{s}.csv"} for s in range(3)]
    lo, hi = bench.seed_mean_ci(seg, tmp_path)
    assert lo < 0.82975 < hi and hi - lo < 0.01  # around the mean of the per-case means over labels
    seg = [{**r, "dataset": "hippocampus", "fraction": 0.1, "seed": s, "test_dice": 0.83, "n_train": 20,
            "commit": "abc"} for s, r in enumerate(seg)]
    (rec,) = bench.summarise(seg, ("dataset", "fraction"), tmp_path)
    assert rec["nsd"] == pytest.approx(0.805) and rec["nsd_ci95"][0] <= 0.805 <= rec["nsd_ci95"][1]
    assert bench.seed_mean_ci([{"task": "classify"}], tmp_path) is None  # nothing kept: no interval


def test_backbone_is_made_once_and_only_for_unfinished_runs(tmp_path, monkeypatch):
    """Kept runs from the pretrained backbone need no backbone; missing ones make it once, first."""
    kept = lambda path, sets, *files: None if "pretrained" in path.name and "_s1" in path.name else {  # noqa: E731
        "task": "segment", "dataset": "hippocampus", "fraction": 0.1, "seed": int(path.stem[-1]), "init": "x",
        "test_dice": 0.8, "n_train": 20, "commit": "abc", "command": "x", "augment": "planned"}
    made = []
    monkeypatch.setattr(bench.common, "load_reusable", kept)
    monkeypatch.setattr(bench, "backbone", lambda *a, **k: made.append(k["name"]) or tmp_path / k["name"])
    monkeypatch.setattr(bench, "seg_run", lambda f, seed, init, *a: {**kept(Path(f"scratch_s{seed}"), []), "init": init})
    monkeypatch.setattr(bench, "plot", lambda *a: None)
    readme = tmp_path / "r.md"
    readme.write_text(f"{bench.START}\n{bench.END}\n")
    argv = ["transfer.py", "--part", "segment", "--fractions", "0.1", "--out", str(tmp_path),
            "--results", str(tmp_path / "t.json"), "--readme", str(readme)]
    monkeypatch.setattr(sys, "argv", argv + ["--seeds", "0"])
    bench.main()
    assert made == []  # every run kept: the backbone is not needed
    monkeypatch.setattr(sys, "argv", argv + ["--seeds", "0", "1", "2"])
    bench.main()
    assert made == ["seg-backbone"]  # seed 1's pretrained run is missing: made once, before that run
