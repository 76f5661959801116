"""What every benchmark shares: a killed benchmark's training continues instead of starting over; a
measured command reports its own process's time and memory."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import common  # noqa: E402


def test_a_killed_benchmark_run_continues_and_a_finished_one_is_not_repeated(breast_npz, tmp_path, monkeypatch):
    from medcnn.data.classification import load_classification
    from medcnn.planning import default_plan

    monkeypatch.setattr(common, "same_code", lambda *a: True)  # the code at hand (a dirty tree reads as changed)
    data = load_classification(str(breast_npz))
    plan = default_plan(data, str(breast_npz)).override(["epochs=2", "ensemble=1", "tta=none"])
    run_dir = tmp_path / "seed0"
    info = lambda: json.loads((run_dir / "run.json").read_text())  # noqa: E731

    common.train_resumable(plan, data, run_dir, [], "bench/classify.py")
    first = info()
    assert (tmp_path / "seed0.started.json").is_file() and "finished" in first

    common.train_resumable(plan, data, run_dir, [], "bench/classify.py")  # finished: nothing trained again
    assert info()["started"] == first["started"] and info()["train_seconds"] == first["train_seconds"]

    # as a kill leaves it: no "finished", the last checkpoint of a completed epoch
    (run_dir / "run.json").write_text(json.dumps({k: v for k, v in first.items() if k != "finished"}))
    common.train_resumable(plan, data, run_dir, [], "bench/classify.py")
    again = info()
    assert again["resumed"] and again["started"] == first["started"] and len(again["resumed_at"]) == 1
    assert again["train_seconds"] >= sum(e["seconds"] for e in json.loads((run_dir / "metrics.json").read_text())["epochs"]) - 0.1

    # another plan (or other overrides, or other code): a fresh run
    common.train_resumable(plan.override(["seed=1"]), data, run_dir, [], "bench/classify.py")
    assert not info()["resumed"] and "resumed_at" not in info()
    common.train_resumable(plan, data, run_dir, ["optim.lr=0.01"], "bench/classify.py")
    assert not info()["resumed"]


def test_a_measured_process_reports_its_own_peak_memory_not_the_benchmarks():
    # the benchmark holds far more than the child will use; a child's ru_maxrss would report it
    held = bytearray(600 * 2**20)
    held[::4096] = b"\x01" * len(held[::4096])
    seconds, mb = common.child_cost("import time; t = time.perf_counter(); seconds = time.perf_counter() - t")
    assert seconds >= 0 and 1 < mb < 300
    del held


def test_a_failed_medcnn_command_is_an_error_not_a_cost(tmp_path):
    with pytest.raises(RuntimeError, match="the measured process failed"):
        common.medcnn_cost(["predict", str(tmp_path / "no-run"), str(tmp_path / "no-image.png")])
