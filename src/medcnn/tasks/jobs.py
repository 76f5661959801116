"""A run's ``medcnn predict`` writer (its task's output job), for the CLI, the service and tools."""
from __future__ import annotations

from pathlib import Path

from medcnn.tasks.registry import run_task


def predict_job(run: Path, checkpoint: str = "best", engine: str = "torch", out_dir: Path | None = None,
                overwrite: bool = False, max_uncertainty: float | None = None, keep_phi: bool = False,
                allow_out_of_domain: bool = False):
    """The task's writer around the run's inferer; ``keep_phi``: DICOM outputs keep the patient's
    identity (medcnn.io.phi); ``allow_out_of_domain``: a classifier predicts inputs its domain check
    calls foreign (medcnn.infer.domain)."""
    task = run_task(run, "predict", checkpoint)
    model = task.load(run, checkpoint, engine)
    job = task.output_job(model, Path(run), out_dir, overwrite,
                          {"checkpoint": checkpoint, "max_uncertainty": max_uncertainty,
                           "allow_out_of_domain": allow_out_of_domain})
    job.keep_phi = keep_phi
    job.task, job.model = task, model
    return job
