"""The REST API of `medcnn serve` on real files: a DICOM slice and a MedMNIST image to a classifier, an MSD
Hippocampus volume to a segmenter, the TCIA DICOM series (zipped) to a denoiser; bad uploads, limits,
retention and privacy."""
import gzip
import io
import json
import logging
import zipfile

import nibabel as nib
import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from medcnn.io.channels import read_case
from medcnn.serve.app import create_app
from medcnn.serve.models import load_models
from medcnn.tasks import load_model


@pytest.fixture(scope="module")
def models(breast_run, hippo_run, enhance_run):
    return load_models([breast_run, hippo_run, enhance_run])


@pytest.fixture(scope="module")
def client(models):
    with TestClient(create_app(models)) as c:
        yield c


@pytest.fixture(scope="module")
def dicom_files(dicom_series_dir):
    return sorted(dicom_series_dir.rglob("*.dcm"))


def _view(client, view):
    raw = client.get(view["url"]).content
    return np.frombuffer(raw, dtype=view["dtype"]).reshape(view["shape"])


def _zip(files, names=None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i, f in enumerate(files):
            z.writestr(names[i] if names else f"series/{f.name}", f.read_bytes())
    return buf.getvalue()


def test_health_and_models_list_every_run_with_its_data_card(client, breast_run, hippo_run, enhance_run):
    assert client.get("/health").json()["status"] == "ok"
    listed = {m["name"]: m for m in client.get("/v1/models").json()}
    assert {listed[r.name]["task"] for r in (breast_run, hippo_run, enhance_run)} == {"classify", "segment", "enhance"}
    card = listed[breast_run.name]["card"]
    assert card["classes"] == ["malignant", "normal, benign"] and card["cases"]["train"] == 546
    assert card["training_data"] == "breastmnist.npz" and "auc" in card["validation"]
    assert listed[hippo_run.name]["card"]["classes"] == ["Anterior", "Posterior"]
    assert listed[enhance_run.name]["card"]["degradation"]["kind"] == "gaussian"
    assert "/v1/predict" in client.get("/openapi.json").json()["paths"]
    page = client.get("/").text
    assert "http" not in page.replace("http-equiv", "")  # the workbench loads nothing from elsewhere


def test_classify_a_dicom_slice_with_heat_map(client, breast_run, dicom_files):
    r = client.post("/v1/predict", files={"file": ("slice.dcm", dicom_files[12].read_bytes())},
                    data={"model": breast_run.name})
    assert r.status_code == 200, r.text
    body = r.json()
    res = body["result"]
    assert body["type"] == "DICOM" and body["input"]["modality"] == "MR"
    # an MR slice into a breast-ultrasound model: foreign, so no class unless asked for
    assert res["prediction"] == "out of domain - not predicted" and res["domain"]["verdict"] == "foreign"
    assert abs(sum(res["probabilities"].values()) - 1) < 1e-4
    allowed = client.post("/v1/predict", files={"file": ("slice.dcm", dicom_files[12].read_bytes())},
                          data={"model": breast_run.name, "allow_out_of_domain": "true", "explain": "false"}).json()
    assert allowed["result"]["prediction"] in ("malignant", "normal, benign")
    assert allowed["result"]["domain"]["verdict"] == "foreign"
    image = _view(client, body["views"]["image"])
    ds = pydicom.dcmread(dicom_files[12])
    assert image.shape == (1, ds.Rows, ds.Columns, 1)
    assert np.allclose(image[0, :, :, 0], ds.pixel_array * float(getattr(ds, "RescaleSlope", 1))
                       + float(getattr(ds, "RescaleIntercept", 0)))
    heat = _view(client, body["views"]["heat"])
    assert heat.shape == (1, 28, 28, 1) and heat.max() == 255  # scaled to [0, 1] per image
    files = {d["file"]: d["url"] for d in body["downloads"]}
    assert json.loads(client.get(files["result.json"]).content) == res
    assert client.get(files["gradcam.png"]).content[:8] == b"\x89PNG\r\n\x1a\n"


def test_type_comes_from_content_and_answers_match_predict(client, breast_run, breast_npz, tmp_path):

    png = tmp_path / "b.png"
    Image.fromarray(np.load(breast_npz)["test_images"][3]).save(png)
    # a misleading name: the content (PNG) decides, and the name is never used as a path
    r = client.post("/v1/predict", files={"file": ("../../etc/passwd.dcm", png.read_bytes())},
                    data={"model": breast_run.name, "explain": "false"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["type"] == "PNG" and body["file"] == "passwd.dcm" and "heat" not in body["views"]
    expected = load_model(breast_run).predict_files([png])[0]
    assert body["result"]["prediction"] == expected["prediction"]
    assert body["result"]["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-6)


def test_segment_a_nifti_volume_with_measurements_and_mask(client, hippo_run, hippocampus_dir):
    src = hippocampus_dir / "imagesTr" / "hippocampus_001.nii.gz"
    r = client.post("/v1/predict", files={"file": ("case.nii.gz", src.read_bytes())}, data={"model": hippo_run.name})
    assert r.status_code == 200, r.text
    body = r.json()
    files = {d["file"]: d["url"] for d in body["downloads"]}
    assert {"mask.nii.gz", "overlay.png", "measurements.json", "measurements.csv"} <= set(files)
    mask = nib.Nifti1Image.from_bytes(gzip.decompress(client.get(files["mask.nii.gz"]).content))
    src_img = nib.load(src)
    assert mask.shape == src_img.shape and np.allclose(mask.affine, src_img.affine)
    m = np.asarray(mask.dataobj)
    voxel = float(np.prod(src_img.header.get_zooms()[:3]))
    by_name = {lab["name"]: lab for lab in body["result"]["labels"]}
    for value, name in ((1, "Anterior"), (2, "Posterior")):
        assert by_name[name]["size_mm"] == pytest.approx((m == value).sum() * voxel, rel=1e-3)
    view = _view(client, body["views"]["mask"])  # display order: slices along the last axis, anterior up
    assert view.shape == (m.shape[2], m.shape[1], m.shape[0], 1)
    assert np.array_equal(view[..., 0], np.transpose(m, (2, 1, 0))[:, ::-1])
    assert [lab["name"] for lab in body["views"]["mask"]["labels"]] == ["Anterior", "Posterior"]


def test_a_zip_of_channel_files_is_one_case_of_a_multi_sequence_model(lgg_run, lgg_dir):
    """The LGG run takes three MR sequences, one file each: a ZIP of a patient's CASE_0000..0002
    (in any member order) is one input, answered as `medcnn predict` answers those files."""
    run, root = lgg_run
    case = sorted((root / "imagesTr").glob("*_0000.nii.gz"))[0].name[: -len("_0000.nii.gz")]
    files = [lgg_dir / "imagesTr" / f"{case}_{k:04d}.nii.gz" for k in (2, 0, 1)]
    with TestClient(create_app(load_models([run]))) as c:
        r = c.post("/v1/predict", files={"file": ("case.zip", _zip(files, [f"p/{f.name}" for f in files]))})
        assert r.status_code == 200, r.text
        body = r.json()
        mask = nib.Nifti1Image.from_bytes(gzip.decompress(c.get(
            next(d["url"] for d in body["downloads"] if d["file"] == "mask.nii.gz")).content))
        ref = load_model(run).segment(read_case(files[1], 3)).label.array[0]
        assert np.array_equal(np.asarray(mask.dataobj), ref)
        # channel files that do not say their channel, or too few of them: one line each, nothing predicted
        bad = c.post("/v1/predict", files={"file": ("case.zip", _zip(files, ["flair.nii.gz", "t1.nii.gz", "t1c.nii.gz"]))})
        assert bad.status_code == 422 and "CASE_0000, CASE_0001, CASE_0002" in bad.json()["detail"]
        two = c.post("/v1/predict", files={"file": ("case.zip", _zip(files[:2], [f.name for f in files[:2]]))})
        assert two.status_code == 422 and "numbered [0, 2]" in two.json()["detail"]


def test_enhance_a_zipped_dicom_series_into_a_derived_series(client, enhance_run, dicom_files):
    r = client.post("/v1/predict", files={"file": ("study.zip", _zip(dicom_files))}, data={"model": enhance_run.name})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["type"] == "DICOM series" and body["input"]["shape"][2] == len(dicom_files)
    before, after = _view(client, body["views"]["image"]), _view(client, body["views"]["restored"])
    assert before.shape == after.shape == (len(dicom_files), 320, 260, 1)
    assert 0 < body["result"]["mean_abs_change"] < np.abs(before).mean()
    files = {d["file"]: d["url"] for d in body["downloads"]}
    with zipfile.ZipFile(io.BytesIO(client.get(files["restored_dicom.zip"] + "?download=true").content)) as z:
        names = z.namelist()
        first = pydicom.dcmread(io.BytesIO(z.read(names[0])))
    assert len(names) == len(dicom_files)
    assert first.SeriesInstanceUID != pydicom.dcmread(dicom_files[0]).SeriesInstanceUID


def test_a_dicom_without_its_preamble_is_still_recognised(client, breast_run, dicom_files):
    whole = client.post("/v1/predict", files={"file": ("a", dicom_files[12].read_bytes())}, data={"model": breast_run.name})
    bare = client.post("/v1/predict", files={"file": ("a", dicom_files[12].read_bytes()[132:])},  # no preamble, no DICM
                       data={"model": breast_run.name})
    assert bare.status_code == 200, bare.text
    assert bare.json()["type"] == "DICOM" and bare.json()["result"] == whole.json()["result"]


def test_bad_uploads_get_a_clear_4xx_and_the_server_keeps_serving(client, breast_run, hippocampus_dir, dicom_files):
    cases = [
        (b"this is not an image", 415, "unrecognised file type"),
        (dicom_files[0].read_bytes()[:2000], 422, "slice.dcm"),  # a truncated DICOM
        (b"", 422, "empty upload"),
        ((hippocampus_dir / "imagesTr" / "hippocampus_001.nii.gz").read_bytes(), 422, "takes 2D images"),
        (_zip([dicom_files[0]], ["../../../../tmp/medcnn-escape.dcm"])[:40], 422, "ZIP"),
    ]
    for content, status, words in cases:
        r = client.post("/v1/predict", files={"file": ("slice.dcm", content)}, data={"model": breast_run.name})
        assert r.status_code == status, (words, r.text)
        assert words in r.json()["detail"]
    r = client.post("/v1/predict", files={"file": ("x.zip", _zip([dicom_files[0]], ["../../../../tmp/medcnn-escape.dcm"]))},
                    data={"model": breast_run.name})
    assert r.status_code == 200  # a ZIP member's path is never used: the one DICOM inside is read
    import pathlib

    assert not pathlib.Path("/tmp/medcnn-escape.dcm").exists()
    assert client.post("/v1/predict", files={"file": ("a.png", b"x")}, data={"model": "nope"}).status_code == 404
    assert client.post("/v1/predict", data={"model": breast_run.name}).status_code == 422  # no file
    assert client.get("/v1/results/" + "0" * 32 + "/mask.nii.gz").status_code == 404
    assert client.get("/v1/results/..%2f..%2fetc/passwd").status_code == 404
    assert client.get("/health").json()["status"] == "ok"


def test_upload_limit_queue_limit_retention_and_privacy(models, breast_run, dicom_files, caplog, tmp_path):
    slice_bytes = dicom_files[12].read_bytes()
    app = create_app(models, max_upload_mb=0.1, retention_s=3600)
    with TestClient(app) as c:
        big = c.post("/v1/predict", files={"file": ("big.dcm", slice_bytes * 2)})
        assert big.status_code == 413 and "limit" in big.json()["detail"]
        chunked = c.post("/v1/predict", content=(b"x" for _ in range(3)), headers={"content-type": "multipart/form-data"})
        assert chunked.status_code == 411
    app = create_app(models, retention_s=3600, workdir=tmp_path / "work")
    service = app.service
    assert (tmp_path / "work").stat().st_mode & 0o077 == 0  # private to the server's user
    ds = pydicom.dcmread(dicom_files[12])
    with caplog.at_level(logging.INFO, logger="medcnn.serve"), TestClient(app) as c:
        r = c.post("/v1/predict", files={"file": ("PGBM-005 scan.dcm", slice_bytes)}, data={"model": breast_run.name})
        assert r.status_code == 200
        rid = r.json()["id"]
        assert not (tmp_path / "work" / rid / "input").exists()  # the upload is gone once predicted
        logged = caplog.text
        assert rid[:8] in logged
        for secret in (str(ds.PatientName), str(ds.PatientID), "PGBM-005 scan"):
            assert secret and secret not in logged
        url = r.json()["views"]["image"]["url"]
        service.retention_s = 0
        assert service.expire() == 1
        assert c.get(url).status_code == 404 and not (tmp_path / "work" / rid).exists()
    app = create_app(models, max_queue=0)
    with TestClient(app) as c:
        busy = c.post("/v1/predict", files={"file": ("s.dcm", slice_bytes)})
        assert busy.status_code == 503 and busy.headers["retry-after"]
    with TestClient(create_app(models)) as c:
        workdir = c.app.service.workdir
        assert workdir.is_dir()
    assert not workdir.exists()  # everything is deleted when the server stops


def test_serve_with_the_onnx_engine(breast_run, dicom_files, tmp_path):
    import shutil

    from medcnn.cli.main import main

    run = tmp_path / "breast"
    shutil.copytree(breast_run, run, ignore=shutil.ignore_patterns("export", "predictions"))
    assert main(["export", str(run)]) == 0
    slice_bytes = dicom_files[12].read_bytes()
    answers = {}
    for engine in ("torch", "onnx"):
        with TestClient(create_app(load_models([run], engine=engine))) as c:
            assert c.get("/v1/models").json()[0]["engine"] == engine
            r = c.post("/v1/predict", files={"file": ("s.dcm", slice_bytes)})
            assert r.status_code == 200, r.text
            answers[engine] = r.json()
    assert "heat" not in answers["onnx"]["views"]  # no gradients through ONNX Runtime: no Grad-CAM
    assert answers["onnx"]["result"]["prediction"] == answers["torch"]["result"]["prediction"]
    for k, v in answers["torch"]["result"]["probabilities"].items():  # bf16 PyTorch vs float32 ONNX
        assert abs(answers["onnx"]["result"]["probabilities"][k] - v) < 0.02
