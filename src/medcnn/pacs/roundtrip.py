"""One study through a model and back: fetch its image series over DICOMweb, predict with the run's
own writers (segmentation: a DICOM SEG; enhancement: a derived series), store the new objects into
the same study. The stored objects keep the source patient and study as DICOM requires (they are
filed with the images); logs and messages name the study and series by UID only. Nothing is stored
unless every chosen series was predicted."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from medcnn.errors import InputError, MedcnnError
from medcnn.pacs.client import MODALITY, SERIES, Pacs, uid_of
from medcnn.tasks.jobs import predict_job
from medcnn.tasks.outputs import input_output_dir

log = logging.getLogger("medcnn.pacs")

NOT_IMAGES = {"SEG", "SR", "RTSTRUCT", "PR", "KO", "DOC", "REG"}
"""Modalities of a study's series that are results or documents, not images to predict."""


def image_series(pacs: Pacs, study: str) -> list[str]:
    """The study's image series (not SEG, SR, ... objects), by UID."""
    return [uid_of(s, SERIES) for s in pacs.series_of(study) if uid_of(s, MODALITY) not in NOT_IMAGES]


def dicom_outputs(result: dict[str, Any]) -> list[Path]:
    """The DICOM files a prediction wrote (a SEG, a derived series' instances)."""
    files: list[Path] = []
    for key, value in result.get("outputs", {}).items():
        path = Path(value)
        if key == "dicom_seg":
            files.append(path)
        elif key == "dicom" and path.is_dir():
            files.extend(sorted(path.glob("*.dcm")))
    return files


def predict_study(run: str | Path, url: str, study: str, series: list[str] | None = None, *,
                  checkpoint: str = "best", engine: str = "torch") -> dict[str, Any]:
    """Fetch ``series`` (default: every image series of ``study``), predict each, store the DICOM
    results into the study; returns what was stored (series UIDs, instance counts) and the results."""
    import pydicom

    pacs = Pacs(url)
    chosen = list(series or image_series(pacs, study))
    if not chosen:
        raise InputError(f"study {study}: no image series to predict", url)
    job = predict_job(Path(run), checkpoint, engine, None, keep_phi=True)
    with tempfile.TemporaryDirectory(prefix="medcnn-pacs-") as tmp:
        tmp = Path(tmp)
        results, to_store = [], []
        for i, uid in enumerate(chosen):
            folder = pacs.fetch_series(study, uid, tmp / "in" / f"series{i}")
            try:
                r = job.one(folder, input_output_dir(tmp / "out", folder, False))
            except MedcnnError as e:
                raise InputError(f"series {uid} of study {study}: {e.problem}", url) from None
            r["file"] = f"series {uid}"
            results.append(r)
            to_store.extend(dicom_outputs(r))
        if not to_store:
            raise InputError(f"study {study}: the {job.task.name} model wrote no DICOM object to store "
                             "(a DICOM SEG needs a 3D series; classification results are not stored yet)", url)
        datasets = [pydicom.dcmread(f) for f in to_store]
        pacs.store(datasets, study)
    stored: dict[str, dict[str, Any]] = {}
    for ds in datasets:
        entry = stored.setdefault(ds.SeriesInstanceUID, {"modality": ds.Modality, "instances": 0})
        entry["instances"] += 1
    log.info("study %s: %d series predicted, %d objects stored", study, len(chosen), len(datasets))
    return {"study": study, "series": chosen, "stored": stored, "results": results}
