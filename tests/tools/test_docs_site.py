"""The documentation site builds with mkdocs --strict: every page in the navigation exists, and no
link or anchor between pages is broken."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("material")


def test_the_site_builds_strictly(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    for page in ("index.html", "results/index.html", "reference/cli/index.html", "reference/plan/index.html",
                 "bench-results/EXPERIMENTS/index.html", "bench-results/predictions/segment-drive-cases.csv"):
        assert (tmp_path / "site" / page).is_file(), page


def test_readme_is_short_and_links_only_to_files_that_exist():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    import re

    for target in re.findall(r"\]\(((?!https?:)[^)#]+)", text):
        assert (ROOT / target).exists(), target
