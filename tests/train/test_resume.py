"""A run killed with SIGKILL after its first checkpoint resumes and completes."""
import json
import signal
import subprocess
import sys
import time

from medcnn.cli.main import main


def test_kill_and_resume(breast_npz, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "medcnn", "train", str(breast_npz), "--out", str(run), "--epochs", "4",
           "--no-progress", "--augment", "none", "--set", "ensemble=1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = json.loads((run / "metrics.json").read_text())["epochs"]
    assert 1 <= len(done) < 4, "killed too late to test resuming"

    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    epochs = json.loads((run / "metrics.json").read_text())["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4]
    assert json.loads((run / "run.json").read_text())["resumed"] is True
