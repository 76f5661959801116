"""Data-parallel training: two real CPU processes (Lightning DDP, gloo) train what one process trains.

Tolerance, stated: the 2-process run shares each global batch of 128 between the processes
(64 each) and averages their gradients, so it follows the 1-process run's trajectory except for
BatchNorm, which on CPU normalises over each process's 64 samples (torch's SyncBatchNorm is
GPU-only). The compared result is the per-epoch training loss (the mean over all 546 images,
gathered from both processes): it must stay within 0.1 of the 1-process run at every epoch (the
seed-to-seed spread of 1-process runs is 0.05-0.12 here). Validation metrics of 4-epoch runs on
78 images swing more than that between seeds (AUC 0.56-0.84), so they are not the yardstick; the
run folder must serve predictions as a 1-process one does.
"""
import json

import pytest

from medcnn.tasks import load_model

from .runs import EPOCHS, curve, epochs, run, train_cmd  # noqa: F401

pytestmark = pytest.mark.xdist_group("reference_runs")  # beside test_resume: see there


def test_two_processes_match_one(reference_runs, breast_npz, tmp_path):
    run_dir = tmp_path / "ddp"
    done = run(train_cmd(breast_npz, run_dir, 0, "--devices", "2"))
    assert [e["epoch"] for e in epochs(run_dir)] == list(range(1, EPOCHS + 1))
    info = json.loads((run_dir / "run.json").read_text())
    assert info["distributed"]["processes"] == 2
    assert info["distributed"]["effective_batch_size"] == 128 and info["distributed"]["batch_per_process"] == 64
    assert info["threads"] == 1  # the two cores are shared between the two processes
    assert done.stdout.count("done in") == 1  # one voice: rank 1 neither prints nor writes

    one = reference_runs["seed0"]
    loss_gap = max(abs(a - b) for a, b in zip(curve(run_dir, "train_loss"), curve(one, "train_loss")))
    assert loss_gap <= 0.1, (curve(run_dir, "train_loss"), curve(one, "train_loss"))
    assert curve(run_dir, "train_loss")[-1] < curve(run_dir, "train_loss")[0] - 0.15  # it learned

    from medcnn.data.classification import load_classification

    x, y = load_classification(str(breast_npz)).split("val")
    probs = load_model(run_dir, "best").predict_array(x[:16])
    assert probs.shape == (16, 2) and abs(float(probs.sum()) - 16) < 1e-3
