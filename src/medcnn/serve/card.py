"""The data card of a run folder: what the model was trained on and how well it did, for ``/v1/models``
and the web page. Read from the run's own files (plan.yaml, run.json, eval/test*.json); nothing about
a patient is in them."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medcnn.runs import RunFolder

CAVEAT = ("Research software, not a medical device. Valid only for images like its training data (modality, "
          "anatomy, acquisition); check every output before any clinical use.")


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _scalars(d: dict) -> dict[str, float]:
    return {k: round(float(v), 4) for k, v in d.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("n", "peak_rss_mb", "ensemble")}


def data_card(run: Path, plan, task) -> dict[str, Any]:
    """``task``: the run's :class:`medcnn.tasks.Task` (it says what the model outputs)."""
    info = _json(RunFolder(run).info_file)
    card: dict[str, Any] = {
        "task": plan.task,
        "intended_use": "",
        "classes": [],
        "dimensions": f"{plan.spatial_dims}D",
        "network": plan.model.name,
        "input": {"size": list(plan.preprocessing.input_size), "channels": plan.preprocessing.channels},
        "training_data": Path(str(plan.data)).name if plan.data else None,
        "cases": info.get("n"),
        "trained": info.get("finished"),
        "validation": ({info["val_metric"]: round(float(info["best_val_score"]), 4)}
                       if "val_metric" in info and info.get("best_val_score") is not None else {}),
        "test": {},
        "caveat": CAVEAT,
    }
    card.update(task.card(plan))
    for f in sorted(RunFolder(run).eval_dir.glob("test*.json")):
        card["test"].update(_scalars(_json(f)))
    return card
