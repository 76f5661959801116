"""A run folder loaded for serving: one request's input -> its result, output files and page views.

The work is the task's (the same predictors and output writers as ``medcnn predict``, and
``Task.serve`` for what one request returns); this module draws what the web page shows
(:mod:`medcnn.serve.views`).
A model runs one request at a time (its lock); the app's worker pool bounds how many run at once.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from medcnn.errors import RunFolderError
from medcnn.io.channels import read_case
from medcnn.runs import RunFolder
from medcnn.serve.card import data_card
from medcnn.serve.views import heat_view, image_view, mask_view, slice_step

SHOW_COMPONENTS = 5
"""Components per label in a response (the largest first); measurements.json has them all."""


class ServedModel:
    def __init__(self, run: Path, name: str, engine: str = "torch", checkpoint: str = "best", keep_phi: bool = False):
        from medcnn.tasks.jobs import predict_job

        RunFolder(run).require()
        self.run, self.name, self.engine, self.checkpoint = run, name, engine, checkpoint
        self.job = predict_job(run, checkpoint, engine, None, True, None, keep_phi)
        self.task = self.job.task.name
        self.plan = self.job.model.plan  # the network's plan (the run's inference settings applied)
        self.card = data_card(run, self.plan, self.job.task)
        self.lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "task": self.task, "engine": self.engine, "card": self.card}

    def predict(self, path: Path, dest: Path, options: dict[str, Any]) -> dict[str, Any]:
        """Run on the input at ``path`` (a file or a DICOM series folder); files go into ``dest``."""
        with self.lock:
            t0 = time.perf_counter()
            image = read_case(path, self.plan.preprocessing.channels)  # a file, or a case's channel files
            dest.mkdir(parents=True, exist_ok=True)
            out: dict[str, Any] = {"input": {"dimensions": f"{image.spatial_dims}D",
                                             "shape": list(image.spatial_shape),
                                             "spacing_mm": [round(s, 4) for s in image.spacing],
                                             "modality": image.meta.get("modality")}}
            result = self.job.task.serve(self.job, path, image, dest, {"components_shown": SHOW_COMPONENTS, **options})
            result["views"] = self.draw(image, result["views"], dest)
            out.update(result)
            out["seconds"] = round(time.perf_counter() - t0, 3)
        return out

    def draw(self, image, views: dict[str, tuple], dest: Path) -> dict[str, dict]:
        """The page's views: the input, then what the task returned (image, mask or heat map)."""
        step = slice_step(image.spatial_shape)
        drawn = {"image": image_view(image, dest / "image.f32", step)}
        for name, (kind, value, *extra) in views.items():
            if kind == "image":  # shown in the input's window
                drawn[name] = image_view(value, dest / f"{name}.f32", step)
                drawn[name]["window"] = drawn["image"]["window"]
            elif kind == "mask":
                drawn[name] = mask_view(value, dest / f"{name}.u8", step, *extra)
            else:
                drawn[name] = heat_view(value, dest / f"{name}.u8")
        return drawn


def load_models(runs: list[Path], engine: str = "torch", checkpoint: str = "best",
                keep_phi: bool = False) -> dict[str, ServedModel]:
    """Run folders -> served models named by their folder (numbered when two share a name);
    ``keep_phi``: DICOM results keep the upload's patient identity (medcnn.io.phi)."""
    models: dict[str, ServedModel] = {}
    for run in runs:
        run = Path(run)
        if not run.is_dir():
            raise RunFolderError("run folder not found", run)
        name, k = run.name, 1
        while name in models:
            k += 1
            name = f"{run.name}-{k}"
        models[name] = ServedModel(run, name, engine, checkpoint, keep_phi)
    return models
