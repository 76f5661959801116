"""`medcnn train --logger`: TensorBoard and MLflow get the same metrics as the run folder's CSV."""
import json
import subprocess
import sys

import pytest

from .runs import run

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")


def _csv_val_auc(member) -> list[float]:
    import csv

    with open(member / "logs" / "metrics.csv") as f:
        return [float(r["val/auc"]) for r in csv.DictReader(f) if r.get("val/auc")]


def test_tensorboard_and_mlflow_read_back_what_training_logged(breast_npz, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "breast"
    run([sys.executable, "-m", "medcnn", "train", str(breast_npz), "--out", str(out), "--epochs", "1",
         "--set", "ensemble=2", "--no-progress", "--logger", "tensorboard", "--logger", "mlflow"])
    assert json.loads((out / "members" / "m0" / "run.json").read_text())["loggers"] == ["csv", "tensorboard", "mlflow"]

    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for i in (0, 1):
        member = out / "members" / f"m{i}"
        expected = _csv_val_auc(member)
        assert len(expected) == 1
        events = EventAccumulator(str(member / "logs" / "tensorboard")).Reload()
        assert [e.value for e in events.Scalars("val/auc")] == pytest.approx(expected, abs=1e-6)

        monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reads a file store only when told
        client = MlflowClient((out / "logs" / "mlruns").resolve().as_uri())  # the members share their run's store
        (exp,) = [e for e in client.search_experiments() if e.name == "medcnn"]
        (mrun,) = [r for r in client.search_runs([exp.experiment_id]) if r.info.run_name == f"breast-m{i}"]
        history = client.get_metric_history(mrun.info.run_id, "val/auc")
        assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(expected, abs=1e-6)
        assert mrun.data.params["plan/epochs"] == "1" and mrun.data.params["plan/ensemble"] == "1"  # the member's own plan


def test_an_unknown_logger_is_one_line_and_exit_2(breast_npz, tmp_path):
    done = subprocess.run([sys.executable, "-m", "medcnn", "train", str(breast_npz), "--out", str(tmp_path / "r"),
                           "--logger", "wandb"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "unknown logger 'wandb'" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "r").exists()
