"""Never lose work: a training killed with SIGKILL (mid-epoch, and during a checkpoint write)
resumes with ``medcnn train --resume`` and ends where an uninterrupted run ends; the same seed
gives the same metrics."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medcnn.runs import load_checkpoint

from .runs import EPOCHS, curve, epochs, run, train_cmd

KEYS = ("train_loss", "val_loss", "val_auc")

# the tests on the reference runs share one pytest-xdist worker (make test: --dist loadgroup), so that the
# other worker goes on with other tests instead of waiting for the runs under their file lock
pytestmark = pytest.mark.xdist_group("reference_runs")


def _start(npz: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(train_cmd(npz, out, 0), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _wait_for(cond, proc: subprocess.Popen, timeout: float = 300, every: float = 0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        hit = cond()
        if hit:
            return hit
        if proc.poll() is not None:
            pytest.fail(f"training ended before the kill point: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(every)
    proc.kill()
    pytest.fail("kill point not reached in time")


def _resume(run_dir: Path) -> None:
    run([sys.executable, "-m", "medcnn", "train", "--resume", str(run_dir), "--no-progress"])
    assert [e["epoch"] for e in epochs(run_dir)] == list(range(1, EPOCHS + 1))


def _assert_matches_uninterrupted(run_dir: Path, ref: dict) -> None:
    """Within the seed-to-seed spread of uninterrupted runs, at every epoch (and, as a resumed run
    replays the seeded data order and random draws of each epoch, in fact equal)."""
    for key in KEYS:
        got, base, other = curve(run_dir, key), curve(ref["seed0"], key), curve(ref["seed1"], key)
        spread = max(abs(a - b) for a, b in zip(base, other))
        assert max(abs(a - b) for a, b in zip(got, base)) <= spread, (key, got, base, other)
        assert got == pytest.approx(base, abs=1e-5), (key, got, base)


def test_same_seed_same_metrics(reference_runs):
    for key in KEYS:
        assert curve(reference_runs["seed0"], key) == curve(reference_runs["seed0_again"], key)
    assert curve(reference_runs["seed0"], "train_loss") != curve(reference_runs["seed1"], "train_loss")


def test_kill_mid_epoch_and_resume(reference_runs, breast_npz, tmp_path):
    run_dir = tmp_path / "run"
    proc = _start(breast_npz, run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    _wait_for(lambda: last.is_file() and len(epochs(run_dir)) >= 1, proc)
    seconds = epochs(run_dir)[0]["seconds"]
    time.sleep(seconds / 2)  # into the next epoch
    _kill(proc)
    assert 1 <= len(epochs(run_dir)) < EPOCHS, "killed too late to test resuming"
    before = json.loads((run_dir / "run.json").read_text())
    _resume(run_dir)
    _assert_matches_uninterrupted(run_dir, reference_runs)
    # run.json keeps the interrupted start and counts the training time of both parts
    after = json.loads((run_dir / "run.json").read_text())
    assert after["started"] == before["started"] and len(after["resumed_at"]) == 1
    assert after["train_seconds"] >= sum(e["seconds"] for e in epochs(run_dir)) - 0.1
    # the CSV log of the interrupted part stays; the resumed part logs beside it
    assert (run_dir / "logs" / "metrics.csv").is_file() and (run_dir / "logs" / "resumed-1" / "metrics.csv").is_file()


def test_kill_during_checkpoint_write_and_resume(reference_runs, breast_npz, tmp_path):
    """The kill lands while a checkpoint is being written: the previous last.ckpt stays whole, the
    partial write is removed on resume, and the run completes."""
    run_dir = tmp_path / "run"
    ckpts = run_dir / "checkpoints"
    proc = _start(breast_npz, run_dir)
    _wait_for(lambda: len(epochs(run_dir)) >= 1 and (ckpts / "last.ckpt").is_file(), proc)
    partial = _wait_for(lambda: ckpts.is_dir() and list(ckpts.glob(".*.ckpt.*.tmp")), proc, every=0.0005)
    _kill(proc)
    assert any(p.exists() for p in partial), "the write finished before the kill"
    load_checkpoint(ckpts / "last.ckpt")  # whole: the interrupted write never replaced it
    _resume(run_dir)
    assert not list(ckpts.glob(".*.tmp"))
    _assert_matches_uninterrupted(run_dir, reference_runs)
