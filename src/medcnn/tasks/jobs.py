"""A run's ``medcnn predict`` writer (its task's output job), for the CLI, the service and tools."""
from __future__ import annotations

from pathlib import Path

from medcnn.errors import MedcnnError
from medcnn.tasks.registry import run_task


def predict_job(run: Path, checkpoint: str = "best", engine: str = "torch", out_dir: Path | None = None,
                overwrite: bool = False, max_uncertainty: float | None = None, keep_phi: bool = False,
                allow_out_of_domain: bool = False, rtstruct: bool = False):
    """The task's writer around the run's inferer; ``keep_phi``: DICOM outputs keep the patient's
    identity (medcnn.io.phi); ``allow_out_of_domain``: a classifier predicts inputs its domain check
    calls foreign (medcnn.infer.domain); ``rtstruct``: a segmentation of a DICOM series also gets an
    RTSTRUCT."""
    task = run_task(run, "predict", checkpoint)
    model = task.load(run, checkpoint, engine)
    job = task.output_job(model, Path(run), out_dir, overwrite,
                          {"checkpoint": checkpoint, "max_uncertainty": max_uncertainty,
                           "allow_out_of_domain": allow_out_of_domain})
    if rtstruct and not job.can_rtstruct:
        raise MedcnnError(f"--rtstruct: a {task.name} model writes no contours (segmentation models do)")
    job.keep_phi, job.rtstruct = keep_phi, rtstruct
    job.task, job.model = task, model
    return job
