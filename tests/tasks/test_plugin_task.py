"""A task registered from outside medcnn (tests/tasks/brightness_plugin.py) goes through the public CLI:
plan, train, predict (in a fresh process that knows the task only from the run's plan), evaluate."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from medcnn.cli.main import main

PLUGIN = str(Path(__file__).with_name("brightness_plugin.py"))


def test_a_plugin_task_plans_trains_predicts_and_evaluates(breast_npz, tmp_path, capsys):
    plan_file, run = tmp_path / "plan.yaml", tmp_path / "run"
    assert main(["--plugin", PLUGIN, "plan", str(breast_npz), "--task", "brightness", "-o", str(plan_file)]) == 0
    assert "task: brightness" in plan_file.read_text() and "target: mean" in plan_file.read_text()
    assert main(["--plugin", PLUGIN, "train", "--plan", str(plan_file), "--out", str(run), "--no-progress"]) == 0
    assert "best val MAE" in capsys.readouterr().out and (run / "checkpoints" / "best.ckpt").is_file()

    test = np.load(breast_npz)["test_images"]
    png = tmp_path / "case.png"
    Image.fromarray(test[0]).save(png)
    out = tmp_path / "pred.json"
    done = subprocess.run([sys.executable, "-m", "medcnn", "predict", str(run), str(png), "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (pred,) = json.loads(out.read_text())["results"]
    assert abs(pred["brightness"] - test[0].mean() / 255) < 0.1

    assert main(["--plugin", PLUGIN, "evaluate", str(run), "--json"]) == 0
    report = json.loads((run / "eval" / "test_brightness.json").read_text())
    train = np.load(breast_npz)["train_images"]
    constant = np.abs(test.reshape(len(test), -1).mean(1) / 255 - train.mean() / 255).mean()
    assert report["n"] == len(test) and report["mae"] < constant  # it learned more than the training mean


def test_a_plugin_task_checks_its_own_plan_settings(breast_npz, tmp_path, capsys):
    rc = main(["--plugin", PLUGIN, "plan", str(breast_npz), "--task", "brightness", "-o", str(tmp_path / "p.yaml"),
               "--set", "options.target=max"])
    assert rc == 2 and "options.target must be mean" in capsys.readouterr().err


def test_an_unknown_task_names_the_known_ones(breast_npz, tmp_path, capsys):
    assert main(["plan", str(breast_npz), "--task", "nosuchtask", "-o", str(tmp_path / "p.yaml")]) == 2
    err = capsys.readouterr().err
    assert "'nosuchtask' is not available" in err and "segment" in err and "--plugin" in err


def test_medcnn_tasks_lists_a_plugin_task(capsys):
    assert main(["--plugin", PLUGIN, "tasks"]) == 0
    out = capsys.readouterr().out
    assert "brightness" in out and "segment" in out and "compare" in out
