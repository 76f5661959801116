"""The workbench's PACS panel (`medcnn serve --dicomweb URL`) against a real Orthanc: the study list
names no patient, a study predicted from the page gets its SEG and report stored, and the page is
given what was stored, read back from the PACS."""
import shutil

import pytest
from fastapi.testclient import TestClient

from .test_roundtrip import PATIENT, _store_volume


def test_the_workbench_lists_studies_and_stores_a_segmentation(hippo_run, orthanc, mr_dir, tmp_path, monkeypatch):
    from pydicom.uid import generate_uid

    from medcnn.io import read_image
    from medcnn.io.dicom_sr import read_volumes
    from medcnn.pacs.client import Pacs
    from medcnn.serve.app import create_app
    from medcnn.serve.models import load_models

    url, user, password = orthanc
    monkeypatch.setenv("MEDCNN_DICOMWEB_USER", user)
    monkeypatch.setenv("MEDCNN_DICOMWEB_PASSWORD", password)
    tag = f"wb{generate_uid()[-12:]}"
    nifti = sorted(mr_dir.glob("*.nii.gz"))[0]
    study_uid, series_uid = _store_volume(url, nifti, tmp_path, tag)
    shape = read_image(nifti).spatial_shape
    run = tmp_path / "hippo"
    shutil.copytree(hippo_run, run, ignore=shutil.ignore_patterns("export", "predictions"))
    patient = PATIENT.split("^")[1]
    with TestClient(create_app(load_models([run]), dicomweb=url)) as c:
        assert c.get("/v1/pacs").json() == {"enabled": True, "url": url}
        listed = c.get("/v1/pacs/studies", params={"query": f"StudyDescription={tag}"})
        assert listed.status_code == 200 and [s["study"] for s in listed.json()] == [study_uid]
        assert listed.json()[0]["modalities"] == ["MR"] and patient not in listed.text
        r = c.post("/v1/pacs/predict", data={"study": study_uid, "model": "hippo"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["type"] == "pacs" and body["predicted_series"] == [series_uid] and patient not in r.text
        assert {s["modality"] for s in body["stored"]} == {"SEG", "SR"}
        mask = c.get(body["views"]["mask"]["url"])
        assert mask.status_code == 200 and len(mask.content) == shape[0] * shape[1] * shape[2]  # the SEG, every slice
        (sr_uid,) = [s["series"] for s in body["stored"] if s["modality"] == "SR"]
        (sr,) = Pacs(url).client.retrieve_series(study_uid, sr_uid)
        shown = {m["name"]: m["size_mm"] for m in body["result"]["labels"]}
        assert shown == pytest.approx(read_volumes(sr), rel=1e-6)  # what the page shows is what the PACS holds
        missing = c.post("/v1/pacs/predict", data={"study": "1.2.3.4.5", "model": "hippo"})
        assert missing.status_code == 422 and "1.2.3.4.5" in missing.json()["detail"]
    with TestClient(create_app(load_models([run]))) as c:
        assert c.get("/v1/pacs").json()["enabled"] is False
        assert c.get("/v1/pacs/studies").status_code == 404
