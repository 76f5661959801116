"""The web workbench in a real browser: Debian's Chromium driven by Playwright, against `medcnn serve` started
as a user starts it (the CLI, default host 127.0.0.1). Uploads a real DICOM slice to a classifier and a real
MR volume to a segmenter, checks what the page shows, and saves a screenshot."""
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
SHOTS = Path(os.environ.get("MEDCNN_SCREENSHOTS", "")) if os.environ.get("MEDCNN_SCREENSHOTS") else None

# fraction of the overlay canvas's pixels that are drawn (alpha > 0), and the spread of the image canvas
COVERAGE_JS = """(id) => { const c = document.getElementById(id);
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n / (c.width * c.height); }"""
SPREAD_JS = """(id) => { const c = document.getElementById(id);
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let lo = 255, hi = 0, s = 0;
  for (let i = 0; i < d.length; i += 4) { lo = Math.min(lo, d[i]); hi = Math.max(hi, d[i]); s += d[i]; }
  return [lo, hi, s / (d.length / 4)]; }"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(breast_run, hippo_run, tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "medcnn", "serve", str(breast_run), str(hippo_run),
                                 "--port", str(port)], stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            if proc.poll() is not None:
                pytest.fail(f"medcnn serve exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(url + "/health", timeout=1).read()
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"medcnn serve did not answer in 120 s: {log.read_text()[-2000:]}")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def page(server, chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=FLAGS)
        pg = browser.new_page(viewport={"width": 1280, "height": 860})
        errors = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(server + "/")
        pg.wait_for_selector("#model option", state="attached")
        yield pg
        browser.close()
        assert not errors, errors


def _upload(page, path: Path, model: str) -> None:
    page.select_option("#model", model)
    page.set_input_files("#file", str(path))
    page.wait_for_function("document.body.dataset.state === 'done' || document.body.dataset.state === 'error'",
                           timeout=120_000)
    assert page.evaluate("document.body.dataset.state") == "done", page.inner_text("#status")


def test_classify_a_dicom_in_the_browser(page, breast_run, dicom_series_dir, tmp_path):
    dicom = sorted(dicom_series_dir.rglob("*.dcm"))[12]
    _upload(page, dicom, breast_run.name)
    text = page.inner_text("#prediction")
    # an MR slice into the breast-ultrasound model: the page says why it gives no class
    assert text == "out of domain - not predicted", text
    assert "DICOM modality MR" in page.inner_text("#domain-warning")
    assert len(page.query_selector_all("#details .bar")) == 2  # one probability bar per class
    assert page.evaluate(COVERAGE_JS, "overlay") > 0.99  # the Grad-CAM map is drawn over the whole image
    lo, hi, mean = page.evaluate(SPREAD_JS, "view")
    assert hi - lo > 100  # the MR slice itself, windowed
    # narrowing the window brightens the picture; the heat-map toggle clears the overlay
    page.fill("#window", str(float(page.get_attribute("#window", "min")) * 10))
    page.dispatch_event("#window", "input")
    assert page.evaluate(SPREAD_JS, "view")[2] != mean
    page.uncheck("#show-overlay")
    assert page.evaluate(COVERAGE_JS, "overlay") == 0
    page.check("#show-overlay")
    page.click("#auto-wl")
    assert page.evaluate(SPREAD_JS, "view")[2] == pytest.approx(mean)
    downloads = page.eval_on_selector_all("#downloads a", "as => as.map(a => a.textContent)")
    assert "gradcam.png" in downloads and "result.json" in downloads
    shot = (SHOTS or tmp_path) / "workbench-classify.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_segment_a_volume_in_the_browser(page, hippo_run, hippocampus_dir, tmp_path):
    _upload(page, hippocampus_dir / "imagesTr" / "hippocampus_001.nii.gz", hippo_run.name)
    assert "Anterior" in page.inner_text("#prediction") and "mm3" in page.inner_text("#prediction")
    rows = page.eval_on_selector_all("#measurements tbody tr", "rs => rs.map(r => r.cells[0].textContent)")
    assert rows == ["Anterior", "Posterior"]
    assert page.is_visible("#slice")  # a volume: slice control shown, starting on the slice with most structure
    assert page.evaluate(COVERAGE_JS, "overlay") > 0.002
    page.fill("#slice", "0")
    page.dispatch_event("#slice", "input")
    assert page.inner_text("#slice-label").startswith("1 /")
    shot = (SHOTS or tmp_path) / "workbench-segment.png"
    page.screenshot(path=str(shot), full_page=True)


def test_a_bad_file_shows_the_error_and_the_page_recovers(page, breast_run, tmp_path, dicom_series_dir):
    bad = tmp_path / "notes.dcm"
    bad.write_text("not an image")
    page.select_option("#model", breast_run.name)
    page.set_input_files("#file", str(bad))
    page.wait_for_function("document.body.dataset.state === 'error'", timeout=60_000)
    assert "error 415" in page.inner_text("#status") and "notes.dcm" in page.inner_text("#status")
    _upload(page, sorted(dicom_series_dir.rglob("*.dcm"))[3], breast_run.name)

