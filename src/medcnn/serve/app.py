"""The REST API and web workbench of ``medcnn serve``: FastAPI over :class:`ServedModel`.

- ``POST /v1/predict`` (multipart: ``file``; optional ``model``, ``explain``, ``max_uncertainty``,
  ``allow_out_of_domain``); a classifier's answer carries ``domain`` (see medcnn.infer.domain)
- ``GET /v1/models``, ``GET /health``, ``GET /v1/results/{id}/{file}``, ``DELETE /v1/results/{id}``
- with ``--dicomweb URL``: ``GET /v1/pacs/studies?query=...``, ``POST /v1/pacs/predict`` (form: ``study``,
  ``model``): the study predicted, its results stored into it and read back (medcnn.serve.pacs)
- ``/`` the web page (static files in ``medcnn/serve/static``: no CDN, works offline);
  ``/openapi.json`` the API description (``/docs``: FastAPI's Swagger page, whose script comes from a CDN).

Safe by default: uploads over the size limit are refused before they are read (413); the file type
comes from the content; uploads and results live in a private temporary folder (mode 0700) under
random ids, the input is deleted as soon as it is predicted, results after ``retention_s``, everything
when the server stops; logs hold ids, types, sizes and timings, never file names or DICOM tags. Requests
run in a bounded pool; beyond ``max_queue`` waiting requests the server answers 503 instead of taking
more memory.
"""
from __future__ import annotations

import asyncio
import logging
import re
import secrets
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from medcnn import __version__
from medcnn.errors import InputError, MedcnnError
from medcnn.serve.limits import UploadLimit
from medcnn.serve.uploads import store_upload

log = logging.getLogger("medcnn.serve")
STATIC = Path(__file__).parent / "static"
RESULT_ID = re.compile(r"^[0-9a-f]{32}$")
MEDIA = {".json": "application/json", ".csv": "text/csv", ".png": "image/png", ".gz": "application/gzip",
         ".dcm": "application/dicom", ".zip": "application/zip"}


def display_name(name: str | None) -> str:
    """The client's file name, for messages to that client only: its last part, printable, short."""
    base = re.split(r"[\\/]", name or "upload")[-1]
    base = "".join(c for c in base if c.isprintable())[:80]
    return base or "upload"


class Service:
    """Loaded models, the worker pool, and the results on disk."""

    def __init__(self, models: dict, workdir: Path | None = None, retention_s: float = 3600, workers: int = 1,
                 max_queue: int = 16):
        self.models = models
        self.own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="medcnn-serve-")) if workdir is None else Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o700)
        self.retention_s, self.max_queue = retention_s, max_queue
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="medcnn-predict")
        self.pending = 0
        self.results: dict[str, dict[str, Any]] = {}  # id -> {"created", "files": {file name: path}}
        self.lock = threading.Lock()

    # ---- one request -----------------------------------------------------------------------
    def predict(self, rid: str, model, upload, filename: str, options: dict) -> dict:
        folder = self.workdir / rid
        inbox = folder / "input"
        inbox.mkdir(parents=True)
        raw = inbox / "upload"
        t0 = time.perf_counter()
        try:
            with open(raw, "wb") as f:
                shutil.copyfileobj(upload, f, 1 << 20)
            size = raw.stat().st_size
            path, kind = store_upload(raw, inbox, model.plan.preprocessing.channels)
            out = model.predict(path, folder / "output", options)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(inbox, ignore_errors=True)  # the upload is not kept once predicted
        files = {p.name: p for p in out.pop("files").values()}
        log.info("predict %s model=%s type=%s bytes=%d seconds=%.2f", rid[:8], model.name, kind, size,
                 time.perf_counter() - t0)
        return self._publish(rid, model, filename, kind, out, files)

    def predict_study(self, rid: str, model, panel, study: str) -> dict:
        """A PACS study through ``model``, its results stored into the study (medcnn.serve.pacs)."""
        folder = self.workdir / rid
        t0 = time.perf_counter()
        try:
            out = panel.predict(model, study, folder / "output")
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        out["seconds"] = round(time.perf_counter() - t0, 3)
        log.info("pacs predict %s model=%s stored=%d seconds=%.2f", rid[:8], model.name, len(out["stored"]),
                 out["seconds"])
        return self._publish(rid, model, f"study {study}", "pacs", out, {})

    def _publish(self, rid: str, model, filename: str, kind: str, out: dict, files: dict) -> dict:
        """Register a result's files and page views under ``rid``; the response."""
        folder = self.workdir / rid
        views = out.pop("views")
        for v in views.values():
            files[v["name"]] = folder / "output" / v["name"]
            v["url"] = f"/v1/results/{rid}/{v.pop('name')}"
        with self.lock:
            self.results[rid] = {"created": time.time(), "files": files}
        return {"id": rid, "model": model.name, "task": model.task, "file": filename, "type": kind, **out,
                "views": views,
                "downloads": [{"file": n, "url": f"/v1/results/{rid}/{n}"} for n in files
                              if not n.endswith((".f32", ".u8"))],
                "expires_in_s": self.retention_s}

    def result_file(self, rid: str, name: str) -> Path | None:
        with self.lock:
            entry = self.results.get(rid) if RESULT_ID.match(rid) else None
        return entry["files"].get(name) if entry else None

    def delete(self, rid: str) -> bool:
        with self.lock:
            entry = self.results.pop(rid, None) if RESULT_ID.match(rid) else None
        if entry:
            shutil.rmtree(self.workdir / rid, ignore_errors=True)
        return entry is not None

    def expire(self) -> int:
        now = time.time()
        with self.lock:
            old = [rid for rid, e in self.results.items() if now - e["created"] > self.retention_s]
        for rid in old:
            self.delete(rid)
        return len(old)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        if self.own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            for rid in list(self.results):
                self.delete(rid)


def create_app(models: dict, *, max_upload_mb: float = 512, retention_s: float = 3600, workers: int = 1,
               max_queue: int = 16, workdir: Path | None = None, dicomweb: str | None = None):
    """The ASGI app serving ``models`` (name -> :class:`~medcnn.serve.models.ServedModel`); with
    ``dicomweb`` (a DICOMweb root URL) the PACS panel's routes too."""
    service = Service(models, workdir, retention_s, workers, max_queue)
    panel = None
    if dicomweb:
        from medcnn.serve.pacs import PacsPanel

        panel = PacsPanel(dicomweb)

    async def sweeper():
        while True:
            await asyncio.sleep(max(1.0, min(60.0, retention_s / 4)))
            service.expire()

    @asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(sweeper())
        try:
            yield
        finally:
            task.cancel()
            service.close()

    api = FastAPI(title="medcnn", version=__version__, lifespan=lifespan,
                  description="Classify, segment & measure, enhance medical images with the loaded medcnn runs.")
    api.state.service = service

    def _model(name: str | None):
        """The served model ``name`` (default: the first), or 404."""
        chosen = models.get(name or next(iter(models)))
        if chosen is None:
            raise HTTPException(404, f"no model {name!r}; loaded: {', '.join(models)}")
        return chosen

    def _admit() -> None:
        """Count one more request in progress, or answer 503 when the queue is full."""
        if service.pending >= max_queue:
            raise HTTPException(503, f"server busy ({service.pending} requests in progress or waiting); retry later",
                                headers={"Retry-After": "5"})
        service.pending += 1

    @api.get("/health")
    def health() -> dict:
        return {"status": "ok", "version": __version__, "models": list(models), "busy": service.pending,
                "max_queue": max_queue}

    @api.get("/v1/models")
    def list_models() -> list[dict]:
        return [m.describe() for m in models.values()]

    @api.post("/v1/predict")
    async def predict(file: UploadFile = File(..., description="DICOM file, ZIP of a DICOM series, NIfTI, PNG/JPEG/TIFF; "
                                                        "ZIP of a case's channel files CASE_0000 ... for a "
                                                        "multi-sequence model"),
                      model: str | None = Form(None, description="a name from /v1/models (default: the first)"),
                      explain: bool = Form(True, description="classification: compute the Grad-CAM map"),
                      max_uncertainty: float | None = Form(None, description="classification: abstain above this "
                                                                             "uncertainty (1 - top probability)"),
                      allow_out_of_domain: bool = Form(False, description="classification: predict an input the "
                                                       "domain check calls foreign (the answer still says so)")):
        name = display_name(file.filename)
        chosen = _model(model)
        if max_uncertainty is not None and not 0 <= max_uncertainty <= 1:
            raise HTTPException(422, "max_uncertainty must be between 0 and 1")
        _admit()
        rid = secrets.token_hex(16)
        try:
            loop = asyncio.get_running_loop()
            options = {"explain": explain, "max_uncertainty": max_uncertainty, "allow_out_of_domain": allow_out_of_domain}
            return await loop.run_in_executor(service.pool, service.predict, rid, chosen, file.file, name, options)
        except MedcnnError as e:
            status = 415 if isinstance(e, InputError) and e.problem.startswith("unrecognised file type") else 422
            log.info("predict %s model=%s refused (%d)", rid[:8], chosen.name, status)
            return JSONResponse({"detail": f"{name}: {e.problem}"}, status_code=status)
        except Exception:  # a bug: logged with its traceback, the server goes on
            log.exception("predict %s model=%s failed", rid[:8], chosen.name)
            return JSONResponse({"detail": f"{name}: internal error while predicting (request {rid[:8]})"},
                                status_code=500)
        finally:
            service.pending -= 1
            await file.close()

    @api.get("/v1/pacs")
    def pacs_info() -> dict:
        return {"enabled": panel is not None, "url": panel.url if panel else None}

    def _pacs_error(e: MedcnnError) -> JSONResponse:
        from medcnn.errors import ServerError

        return JSONResponse({"detail": e.problem}, status_code=502 if isinstance(e, ServerError) else 422)

    @api.get("/v1/pacs/studies")
    async def pacs_studies(query: str = "", limit: int = 50):
        if panel is None:
            raise HTTPException(404, "no PACS configured (medcnn serve --dicomweb URL)")
        try:
            return await asyncio.get_running_loop().run_in_executor(None, panel.studies, query, max(1, min(limit, 500)))
        except MedcnnError as e:
            return _pacs_error(e)

    @api.post("/v1/pacs/predict")
    async def pacs_predict(study: str = Form(..., description="StudyInstanceUID"),
                           model: str | None = Form(None, description="a name from /v1/models (default: the first)")):
        if panel is None:
            raise HTTPException(404, "no PACS configured (medcnn serve --dicomweb URL)")
        chosen = _model(model)
        _admit()
        rid = secrets.token_hex(16)
        try:
            return await asyncio.get_running_loop().run_in_executor(service.pool, service.predict_study, rid, chosen,
                                                                    panel, study)
        except MedcnnError as e:
            log.info("pacs predict %s model=%s refused", rid[:8], chosen.name)
            return _pacs_error(e)
        except Exception:
            log.exception("pacs predict %s model=%s failed", rid[:8], chosen.name)
            return JSONResponse({"detail": f"internal error while predicting (request {rid[:8]})"}, status_code=500)
        finally:
            service.pending -= 1

    @api.get("/v1/results/{rid}/{name}")
    def result_file(rid: str, name: str, download: bool = False):
        path = service.result_file(rid, name)
        if path is None or not path.is_file():
            raise HTTPException(404, "no such result (unknown, deleted or expired)")
        media = MEDIA.get(path.suffix, "application/octet-stream")
        return FileResponse(path, media_type=media, filename=name if download else None,
                            headers={"Cache-Control": "no-store"})

    @api.delete("/v1/results/{rid}")
    def delete_result(rid: str) -> dict:
        if not service.delete(rid):
            raise HTTPException(404, "no such result (unknown, deleted or expired)")
        return {"deleted": rid}

    @api.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    api.mount("/static", StaticFiles(directory=STATIC), name="static")
    app = UploadLimit(api, int(max_upload_mb * 2**20))
    app.api, app.service = api, service
    return app
