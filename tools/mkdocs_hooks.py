"""mkdocs hook: the benchmark records' notes and figures (bench/results/*.md, *.png) and the per-case
tables (bench/results/predictions/*.csv) become part of the documentation site under
``bench-results/``, where the results page links them, without a copy in docs/."""
from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, InclusionLevel


def on_files(files, config):
    results = Path(config["config_file_path"]).parent / "bench" / "results"
    published = [p for p in results.iterdir() if p.suffix in (".md", ".png")]
    published += (results / "predictions").glob("*.csv")
    for path in sorted(published):
        # not in the navigation; reached from the pages that link them
        files.append(File.generated(config, f"bench-results/{path.relative_to(results).as_posix()}",
                                    abs_src_path=str(path), inclusion=InclusionLevel.NOT_IN_NAV))
    return files
