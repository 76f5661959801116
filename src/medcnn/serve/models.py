"""A run folder loaded for serving: one request's input -> its result, output files and page views.

The work is the CLI's (the same predictors and output writers as ``medcnn predict``); this module adds
what the web page draws (:mod:`medcnn.serve.views`) and, for classifiers, the Grad-CAM map.
A model runs one request at a time (its lock); the app's worker pool bounds how many run at once.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from medcnn.errors import RunFolderError

SHOW_COMPONENTS = 5
"""Components per label in a response (the largest first); measurements.json has them all."""


class ServedModel:
    def __init__(self, run: Path, name: str, engine: str = "torch", checkpoint: str = "best", keep_phi: bool = False):
        from medcnn.cli.predict import make_job
        from medcnn.plan import Plan
        from medcnn.serve.card import data_card

        if not (run / "plan.yaml").is_file():
            raise RunFolderError("not a run folder (no plan.yaml)", run)
        plan = Plan.load(run / "plan.yaml")
        self.run, self.name, self.task, self.engine = run, name, plan.task, engine
        self.job = make_job(plan.task, run, checkpoint, engine, None, True, None, keep_phi)
        self.plan = self._net_plan()
        self.card = data_card(run, self.plan)
        self.lock = threading.Lock()

    def _net_plan(self):
        j = self.job
        return j.pred.plan if self.task == "classify" else j.seg.plan if self.task == "segment" else j.enh.plan

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "task": self.task, "engine": self.engine, "card": self.card}

    def predict(self, path: Path, dest: Path, options: dict[str, Any]) -> dict[str, Any]:
        """Run on the input at ``path`` (a file or a DICOM series folder); files go into ``dest``."""
        from medcnn.io import read_image

        with self.lock:
            t0 = time.perf_counter()
            image = read_image(path)
            dest.mkdir(parents=True, exist_ok=True)
            out: dict[str, Any] = {"input": {"dimensions": f"{image.spatial_dims}D",
                                             "shape": list(image.spatial_shape),
                                             "spacing_mm": [round(s, 4) for s in image.spacing],
                                             "modality": image.meta.get("modality")}}
            result = getattr(self, f"_{self.task}")(path, image, dest, options)
            out.update(result)
            out["seconds"] = round(time.perf_counter() - t0, 3)
        return out

    # ---- tasks ---------------------------------------------------------------------------------
    def _views(self, image, dest: Path) -> tuple[dict, int]:
        from medcnn.serve.views import image_view, slice_step

        step = slice_step(image.spatial_shape)
        return {"image": image_view(image, dest / "image.f32", step)}, step

    def _classify(self, path: Path, image, dest: Path, options: dict) -> dict:
        from medcnn.infer.explain import base_network, saliency, write_explanation
        from medcnn.serve.views import heat_view
        from medcnn.utils.files import atomic_write_json

        pred = self.job.pred
        x = pred.preprocess(path, image)[None]
        r = pred.result(pred.predict_array(x)[0], path, options.get("max_uncertainty"))
        r.pop("file")
        views, _ = self._views(image, dest)
        files = {}
        if options.get("explain", True) and not getattr(pred.net, "exported", False):
            cls = r.get("index", int(np.argmax(list(r["probabilities"].values()))))
            heat = saliency(base_network(pred), x.float(), "gradcam", cls)[0]
            views["heat"] = heat_view(heat, dest / "heat.u8")
            name = pred.plan.class_names[cls] if pred.plan.class_names else cls
            maps = write_explanation(x[0].numpy(), heat, dest / "gradcam", f"Grad-CAM: {name}")
            files.update({f"heatmap_{k}": v for k, v in maps.items()})
        atomic_write_json(dest / "result.json", r)
        files["json"] = dest / "result.json"
        return {"result": r, "files": files, "views": views}

    def _segment(self, path: Path, image, dest: Path, options: dict) -> dict:
        import json

        from medcnn.serve.views import mask_view

        job = self.job
        label = job.seg.segment(image).label
        row = job.save(path, image, label, dest)
        report = json.loads(Path(row["outputs"]["measurements"]).read_text())
        views, step = self._views(image, dest)
        views["mask"] = mask_view(label, dest / "mask.u8", step, list(job.seg.plan.class_names))
        files = {k: Path(v) for k, v in row["outputs"].items()}
        files["measurements_csv"] = dest / "measurements.csv"
        labels = [{**m, "components": m["components"][:SHOW_COMPONENTS]} for m in report["labels"]]
        return {"result": {"unit": report["unit"], "labels": labels}, "files": files, "views": views}

    def _enhance(self, path: Path, image, dest: Path, options: dict) -> dict:
        from medcnn.serve.views import image_view

        job = self.job
        restored = job.enh.restore(image)
        row = job.save(path, image, restored, dest)
        views, step = self._views(image, dest)
        views["restored"] = image_view(restored, dest / "restored.f32", step)
        views["restored"]["window"] = views["image"]["window"]
        files = {k: Path(v) for k, v in row["outputs"].items()}
        if "dicom" in files:  # a derived series is a folder: downloaded as one ZIP
            files["dicom"] = _zip_folder(files["dicom"], dest / "restored_dicom.zip")
        return {"result": {"what": job.what, "mean_abs_change": row["mean_abs_change"],
                           "p99_abs_change": row["p99_abs_change"],
                           **({"warning": row["warning"]} if "warning" in row else {})},
                "files": files, "views": views}


def _zip_folder(folder: Path, target: Path) -> Path:
    import zipfile

    from medcnn.utils.files import atomic_path

    with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(folder).as_posix())
    return target


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
