"""The transfer benchmark's summary: per-task metric, the issue-#6 goal line, merged parts."""
import importlib.util
import sys
from pathlib import Path

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
