"""One study through a model and back: fetch its image series over DICOMweb, predict with the run's
own writers (segmentation: a DICOM SEG, an RTSTRUCT if asked, and a structured report of its volumes; enhancement: a derived
series; classification: a structured report of each image's finding and probability), store the new
objects into the same study. The stored objects keep the source patient and study as DICOM requires (they are
filed with the images); logs and messages name the study and series by UID only. Nothing is stored
unless every chosen series was predicted."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from medcnn.errors import InputError, MedcnnError
from medcnn.pacs.client import DESCRIPTION, MODALITY, SERIES, Pacs, uid_of
from medcnn.tasks.jobs import predict_job

log = logging.getLogger("medcnn.pacs")

NOT_IMAGES = {"SEG", "SR", "RTSTRUCT", "PR", "KO", "DOC", "REG"}
"""Modalities of a study's series that are results or documents, not images to predict."""


def image_series(pacs: Pacs, study: str) -> list[str]:
    """The study's image series (not SEG, SR, ... objects), by UID."""
    return [uid_of(s, SERIES) for s in pacs.series_of(study) if uid_of(s, MODALITY) not in NOT_IMAGES]


def marker(version: str, k: int, n: int) -> str:
    """What the SeriesDescription of the k-th of the n series stored for a study ends with: the model's
    version and the series' place in the set, so a study whose set is complete is recognised (and
    skipped by a batch), and one the server took only partly is not."""
    return f"[medcnn {version} {k}/{n}]"


def _mark(ds, tag: str) -> None:
    ds.SeriesDescription = f"{str(getattr(ds, 'SeriesDescription', '') or '')[:63 - len(tag)]} {tag}".strip()


def done_by(pacs: Pacs, study: str, version: str) -> bool:
    """Whether the study already holds a complete set of results of this model version."""
    import re

    found = [re.search(rf"\[medcnn {re.escape(version)} (\d+)/(\d+)\]", str(uid_of(s, DESCRIPTION) or ""))
             for s in pacs.series_of(study)]
    places = {(int(m[1]), int(m[2])) for m in found if m}
    return any(all((k, n) in places for k in range(1, n + 1)) for n in {n for _, n in places})


def dicom_outputs(result: dict[str, Any]) -> list[Path]:
    """The DICOM files a prediction wrote (a SEG, an RTSTRUCT, a derived series' instances)."""
    files: list[Path] = []
    for key, value in result.get("outputs", {}).items():
        path = Path(value)
        if key in ("dicom_seg", "rtstruct"):
            files.append(path)
        elif key == "dicom" and path.is_dir():
            files.extend(sorted(path.glob("*.dcm")))
    return files


def model_version(run: Path, checkpoint: str) -> tuple[str, str]:
    """(the model's name, its version): the run folder's name and the first 12 hex digits of the
    SHA-256 of its checkpoint files, so results of other weights are told apart."""
    import hashlib

    from medcnn.runs import RunFolder

    folder = RunFolder(run)
    h = hashlib.sha256()
    for f in folder.checkpoint_files(folder.plan(), checkpoint):
        h.update(Path(f).read_bytes())
    return Path(run).resolve().name, h.hexdigest()[:12]


def _predict_series(job, folder: Path, dest: Path, model: str, version: str) -> tuple[dict, list]:
    """One fetched series through the model: (its result, the DICOM objects to store)."""
    import pydicom

    from medcnn.io.dicom_sr import classification_report, segmentation_report

    files = sorted(folder.glob("*.dcm"))
    sources = [pydicom.dcmread(f) for f in files]
    if job.task.name == "classify":  # one finding per image, in one report
        rows = [job.one(f) for f in files]
        classes = set(job.model.plan.class_names)  # a refusal (out of domain, uncertain) has no probability
        findings = [(ds, r["prediction"], r.get("confidence") if r["prediction"] in classes else None)
                    for ds, r in zip(sources, rows)]
        return {"findings": [(f[1], f[2]) for f in findings]}, [classification_report(findings, model, version)]
    r = job.one(folder, dest)
    new = [pydicom.dcmread(f) for f in dicom_outputs(r)]
    if "dicom_seg" in r.get("outputs", {}):
        if r.get("unit") == "mm3":
            seg = next(d for d in new if d.Modality == "SEG")
            new.append(segmentation_report(seg, sources, r["sizes"], model, version))
        else:  # an SR volume is in mm³ or not at all
            log.warning("series without a pixel spacing: its SEG is stored, no volume report")
    if not new:
        raise InputError(f"the {job.task.name} model wrote no DICOM object to store (a DICOM SEG needs a 3D series)")
    return r, new


def _cases(chosen: list[str], channels: int, explicit: bool, study: str, url: str) -> list[list[str]]:
    """The series each prediction takes: one each, or all of them as the channels of one case."""
    if channels > 1 and len(chosen) > 1:
        if not explicit or len(chosen) != channels:
            raise InputError(f"study {study}: the model takes {channels} channels, one series each: give --series "
                             f"{channels} times, in the model's channel order", url)
        return [chosen]
    return [[uid] for uid in chosen]


def predict_study(run: str | Path, url: str, study: str, series: list[str] | None = None, *,
                  checkpoint: str = "best", engine: str = "torch", rtstruct: bool = False) -> dict[str, Any]:
    """Fetch ``series`` (default: every image series of ``study``), predict each, store the DICOM
    results (with an RTSTRUCT beside a SEG if ``rtstruct``) into the study; returns what was stored
    (series UIDs, instance counts) and the results. A model of several input channels (sequences)
    takes that many ``series``, in its channel order, as one case; its results reference the first."""
    pacs = Pacs(url)
    chosen = list(series or image_series(pacs, study))
    if not chosen:
        raise InputError(f"study {study}: no image series to predict", url)
    job = predict_job(Path(run), checkpoint, engine, None, keep_phi=True, rtstruct=rtstruct)
    channels = int(job.model.plan.preprocessing.channels)
    cases = _cases(chosen, channels, bool(series), study, url)
    model, version = model_version(Path(run), checkpoint)
    with tempfile.TemporaryDirectory(prefix="medcnn-pacs-") as tmp:
        tmp = Path(tmp)
        results, datasets = [], []
        for i, uids in enumerate(cases):
            # one folder per series; a multi-channel case as CASE_0000, CASE_0001 ... (medcnn.io.channels)
            folders = [pacs.fetch_series(study, uid, tmp / "in" / f"case{i}" / (f"series_{k:04d}" if len(uids) > 1 else "series"))
                       for k, uid in enumerate(uids)]
            try:
                r, new = _predict_series(job, folders[0], tmp / "out" / f"case{i}", model, version)
            except MedcnnError as e:
                raise InputError(f"series {' + '.join(uids)} of study {study}: {e.problem}", url) from None
            r["series"] = uids[0] if len(uids) == 1 else uids
            results.append(r)
            datasets.extend(new)
        order = list(dict.fromkeys(str(ds.SeriesInstanceUID) for ds in datasets))
        for ds in datasets:
            _mark(ds, marker(version, order.index(str(ds.SeriesInstanceUID)) + 1, len(order)))
        pacs.store(datasets, study)
    stored: dict[str, dict[str, Any]] = {}
    for ds in datasets:
        entry = stored.setdefault(ds.SeriesInstanceUID, {"modality": ds.Modality, "instances": 0})
        entry["instances"] += 1
    log.info("study %s: %d series predicted, %d objects stored", study, len(chosen), len(datasets))
    return {"study": study, "series": chosen, "stored": stored, "results": results, "version": version}


def predict_query(run: str | Path, url: str, query: str, *, checkpoint: str = "best", engine: str = "torch",
                  rtstruct: bool = False, on_study=None) -> list[dict[str, Any]]:
    """Every study matching the QIDO-RS ``query`` (``Modality=MR&StudyDate=20240101-20241231``):
    predicted and stored, except those that already hold this model version's results (so running
    twice stores nothing twice). A study that fails is reported in its row and the others go on.
    ``on_study(row)`` is called after each (progress)."""
    from urllib.parse import parse_qsl

    filters = dict(parse_qsl(query, keep_blank_values=False))
    if not filters:
        raise InputError(f"--query {query!r}: no ATTRIBUTE=VALUE pairs")
    pacs = Pacs(url)
    version = model_version(Path(run), checkpoint)[1]
    rows = []
    for study in pacs.studies(filters):
        if done_by(pacs, study, version):
            row = {"study": study, "status": "skipped: already done by this model version"}
        else:
            try:
                r = predict_study(run, url, study, checkpoint=checkpoint, engine=engine, rtstruct=rtstruct)
                row = {"study": study, "status": "stored", "stored": r["stored"]}
            except InputError as e:
                row = {"study": study, "status": "failed", "error": e.problem}
        rows.append(row)
        if on_study is not None:
            on_study(row)
    return rows
