"""`pip install .` gives a working `medcnn` outside the checkout: the package (with its zoo, static
files and data tables) installs from a copy of the project, and a zoo model predicts without any
training. Dependencies come from this environment (no network): CI's own install checks those."""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_pip_install_then_predict_with_a_zoo_model(tmp_path, medmnist_dir):
    src = tmp_path / "project"
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / f, src / f)
    env = tmp_path / "env"
    venv.create(env, with_pip=True)
    py = env / "bin" / "python"
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # the dependencies: this environment's packages, as a plain path (its .pth hooks, such as the
    # checkout's editable install, are not read)
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # the wheel `pip install .` builds (with this environment's setuptools), installed into the new one
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                           "-w", str(tmp_path / "wheels"), str(src)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = (tmp_path / "wheels").glob("medcnn-*.whl")
    done = subprocess.run([py, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    from PIL import Image

    png = tmp_path / "breast.png"
    Image.fromarray(np.load(medmnist_dir / "breastmnist.npz")["test_images"][3]).save(png)
    run_env = {**os.environ, "MEDCNN_ZOO_CACHE": str(tmp_path / "cache"), "PYTHONPATH": ""}
    where = subprocess.run([py, "-c", "import medcnn; print(medcnn.__file__)"], capture_output=True, text=True,
                           cwd=tmp_path, env=run_env)
    assert Path(where.stdout.strip()).is_relative_to(env), where.stdout + where.stderr  # the installed copy
    done = subprocess.run([env / "bin" / "medcnn", "predict", "breastmnist-classifier", str(png), "--json", "out.json"],
                          capture_output=True, text=True, cwd=tmp_path, env=run_env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (row,) = json.loads((tmp_path / "out.json").read_text())["results"]
    assert set(row["probabilities"]) == {"malignant", "normal, benign"}
