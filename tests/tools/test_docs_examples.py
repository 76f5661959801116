"""Every ``python`` block of the Python API page runs as it is (in a fresh folder, one process per
page, so a later block may use what an earlier one made)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "guide" / "python.md"


def blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


def test_the_page_has_an_example_per_task():
    text = "\n".join(blocks(PAGE))
    for call in ("load_classification", "load_segmentation", "load_enhance", "load_model(\"breastmnist-classifier\")",
                 "evaluate(", "train("):
        assert call in text, call


@pytest.mark.slow
def test_the_python_api_examples_run(tmp_path, data_root):
    script = tmp_path / "examples.py"
    script.write_text("\n\n".join(f"print('--- block {i}')\n{b}" for i, b in enumerate(blocks(PAGE))))
    env = {**os.environ, "MEDCNN_DATA": str(data_root), "MEDCNN_ZOO_CACHE": str(tmp_path / "zoo")}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert done.stdout.count("--- block") == len(blocks(PAGE))
