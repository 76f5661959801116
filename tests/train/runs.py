"""Real BreastMNIST trainings started as a user starts them (``python -m medcnn train`` in a
subprocess), shared by the resume, determinism and data-parallel tests."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EPOCHS = 3


def train_cmd(npz: Path, out: Path, seed: int = 0, *extra: str) -> list[str]:
    return [sys.executable, "-m", "medcnn", "train", str(npz), "--out", str(out), "--epochs", str(EPOCHS),
            "--seed", str(seed), "--no-progress", "--augment", "light", "--set", "ensemble=1", *extra]


def run(cmd: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def epochs(run_dir: Path) -> list[dict]:
    f = Path(run_dir) / "metrics.json"
    return json.loads(f.read_text())["epochs"] if f.is_file() else []


def curve(run_dir: Path, key: str) -> list[float]:
    return [e[key] for e in epochs(run_dir)]
