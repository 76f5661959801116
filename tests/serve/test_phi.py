"""The service answers with no patient identity: real DICOM uploads whose patient, visit and
institution attributes are set go to a classifier, a segmenter and a denoiser; every JSON response,
view and downloadable result (zips opened) is searched. With ``keep_phi`` the DICOM results keep it."""
import io
import logging
import zipfile

import pydicom
from fastapi.testclient import TestClient

from conftest import PHI, phi_leaks
from medcnn.serve.app import create_app
from medcnn.serve.models import load_models


def _zip(files) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for f in files:
            z.writestr(f"series/{f.name}", f.read_bytes())
    return buf.getvalue()


def _everything(client, body) -> list[str]:
    """The response and every file it links to, as text (zip members unpacked)."""
    texts = [str(body)]
    urls = [d["url"] + "?download=true" for d in body.get("downloads", [])]
    urls += [v["url"] for v in body.get("views", {}).values()]
    for url in urls:
        raw = client.get(url).content
        blobs = [raw]
        if raw[:2] == b"PK":
            with zipfile.ZipFile(io.BytesIO(raw)) as z:
                blobs = [z.read(n) for n in z.namelist()] + [" ".join(z.namelist()).encode()]
        texts += [b.decode("latin-1") for b in blobs]
    return texts


def _predict_all(client, runs, phi_series):
    files = sorted(phi_series.glob("*.dcm"))
    breast_run, hippo_run, enhance_run = runs
    bodies = []
    uploads = [(breast_run, "slice.dcm", files[12].read_bytes()), (hippo_run, "study.zip", _zip(files)),
               (enhance_run, "study.zip", _zip(files))]
    for model, name, payload in (u for u in uploads if u[0] is not None):
        r = client.post("/v1/predict", files={"file": (name, payload)}, data={"model": model.name})
        assert r.status_code == 200, r.text
        bodies.append(r.json())
    return bodies


def test_service_responses_carry_no_phi(breast_run, hippo_run, enhance_run, phi_series, caplog):
    caplog.set_level(logging.DEBUG)
    runs = (breast_run, hippo_run, enhance_run)
    with TestClient(create_app(load_models(list(runs)))) as client:
        texts = [t for body in _predict_all(client, runs, phi_series) for t in _everything(client, body)]
        texts.append(client.get("/v1/models").text)
    leaks = phi_leaks(texts + [caplog.text])
    assert not leaks, leaks[:5]


def test_service_keeps_phi_in_dicom_results_when_asked(breast_run, hippo_run, enhance_run, phi_series):
    with TestClient(create_app(load_models([hippo_run], keep_phi=True))) as client:
        seg_body = _predict_all(client, (None, hippo_run, None), phi_series)[0]
        url = {d["file"]: d["url"] for d in seg_body["downloads"]}["seg.dcm"]
        seg = pydicom.dcmread(io.BytesIO(client.get(url + "?download=true").content))
    assert seg.PatientID == PHI["PatientID"]
