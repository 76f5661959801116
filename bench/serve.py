"""Load test of `medcnn serve` on loopback, and the workbench screenshots in the README (issue #7).

Starts `python -m medcnn serve RUN...` as a user would (default settings: one worker, 127.0.0.1), then per
task sends N requests with C in flight at once, each a real file (classification: slices of the TCIA DICOM
MR series; segmentation and enhancement: MSD Hippocampus test volumes, NIfTI), and reports throughput,
p50 / p95 latency, errors (non-200 answers) and the server's resident memory (VmRSS) after a warm-up and
after the load. Then drives the page in Debian's Chromium (Playwright) and saves one screenshot per task
into docs/img/.

    make bench-serve
    .venv/bin/python bench/serve.py --requests 200 --concurrency 8
    .venv/bin/python bench/serve.py --pacs-shot --segment RUN   # docs/img/workbench-pacs.png

Writes bench/results/serve.json and the README table between the bench-serve markers.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

ROOT = common.ROOT
START, END = "<!-- bench-serve:start -->", "<!-- bench-serve:end -->"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def data_root() -> Path:
    return Path(os.environ.get("MEDCNN_DATA", ROOT.parent / "shared" / "data"))


def inputs(task: str) -> list[tuple[str, bytes]]:
    """Real files a client of this task would send, as (name, bytes)."""
    data = data_root()
    if task == "classify":
        files = sorted((data / "dicom_mr_series_tcia_pgbm005").rglob("*.dcm"))
    else:
        files = sorted((data / "msd_task04_hippocampus" / "imagesTs").glob("*.nii.gz"))
    if not files:
        sys.exit(f"no input files under {data} (set MEDCNN_DATA to the data mirror)")
    return [(f.name, f.read_bytes()) for f in files]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def load(url: str, model: str, files: list[tuple[str, bytes]], n: int, concurrency: int) -> dict:
    import httpx

    latencies, errors, statuses = [], 0, {}
    queue = list(range(n))

    async def client_loop(client):
        nonlocal errors
        while queue:
            i = queue.pop()
            name, content = files[i % len(files)]
            t0 = time.perf_counter()
            try:
                r = await client.post(url + "/v1/predict", files={"file": (name, content)}, data={"model": model})
                status = r.status_code
            except httpx.HTTPError as e:
                status = type(e).__name__
            latencies.append(time.perf_counter() - t0)
            statuses[status] = statuses.get(status, 0) + 1
            if status != 200:
                errors += 1

    async with httpx.AsyncClient(timeout=600) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    q = statistics.quantiles(latencies, n=100)
    return {"requests": n, "concurrency": concurrency, "errors": errors, "statuses": {str(k): v for k, v in statuses.items()},
            "wall_s": round(wall, 2), "requests_per_s": round(n / wall, 2), "p50_ms": round(q[49] * 1000, 1),
            "p95_ms": round(q[94] * 1000, 1)}


def screenshots(url: str, models: dict[str, str], out_dir: Path) -> list[str]:
    from playwright.sync_api import sync_playwright

    data = data_root()
    series = sorted((data / "dicom_mr_series_tcia_pgbm005").rglob("*.dcm"))
    tmp = Path(tempfile.mkdtemp())
    (tmp / "PGBM-005_T1post.zip").write_bytes(_zip(series))
    # the classifier is shown on an image of its own kind: a BreastMNIST test image (malignant), as PNG
    import numpy as np
    from PIL import Image

    npz = np.load(data / "medmnist" / "breastmnist.npz")
    k = int(np.flatnonzero(npz["test_labels"][:, 0] == 0)[0])
    Image.fromarray(npz["test_images"][k]).save(tmp / f"breastmnist_test_{k}.png")
    uploads = {"classify": tmp / f"breastmnist_test_{k}.png", "segment": data / "msd_task04_hippocampus" / "imagesTs" / "hippocampus_002.nii.gz",
               "enhance": tmp / "PGBM-005_T1post.zip"}
    saved = []
    out_dir.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=os.environ.get("MEDCNN_CHROMIUM", "/usr/bin/chromium"),
                                     headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 820})
        page.goto(url + "/")
        page.wait_for_selector("#model option", state="attached")
        for task, name in models.items():
            page.select_option("#model", name)
            page.set_input_files("#file", str(uploads[task]))
            page.wait_for_function("['done', 'error'].includes(document.body.dataset.state)", timeout=600_000)
            if task == "enhance":
                page.fill("#slice", "12")
                page.dispatch_event("#slice", "input")
            page.click("#card summary")
            path = out_dir / f"workbench-{task}.png"
            page.screenshot(path=str(path), full_page=True)
            page.click("#card summary")
            saved.append(str(path.relative_to(ROOT)))
        browser.close()
    return saved


def pacs_screenshot(run: Path, out_dir: Path) -> str:
    """The workbench's PACS panel: an MSD Hippocampus test volume written as a DICOM series into a local
    Orthanc (medcnn.pacs.orthanc), found in the study list, predicted and stored from the page; the
    screenshot shows the SEG read back from the PACS over its series, and where it was stored."""
    import httpx
    import pydicom
    from playwright.sync_api import sync_playwright

    from medcnn.io import read_image
    from medcnn.io.dicom_write import write_dicom_series
    from medcnn.pacs.client import Pacs
    from medcnn.pacs.orthanc import local_orthanc

    tmp = Path(tempfile.mkdtemp())
    volume = data_root() / "msd_task04_hippocampus" / "imagesTs" / "hippocampus_002.nii.gz"
    with local_orthanc(tmp / "orthanc") as (pacs_url, user, password):
        os.environ.update(MEDCNN_DICOMWEB_USER=user, MEDCNN_DICOMWEB_PASSWORD=password)
        datasets = [pydicom.dcmread(f) for f in write_dicom_series(read_image(volume), tmp / "series",
                                                                   description="T1 (MSD Hippocampus test 002)")]
        for ds in datasets:
            ds.StudyDescription = "hippocampus MR (MSD test volume 002)"
        Pacs(pacs_url).store(datasets, datasets[0].StudyInstanceUID)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen([sys.executable, "-m", "medcnn", "serve", str(run), "--port", str(port),
                                   "--dicomweb", pacs_url], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            for _ in range(600):
                try:
                    httpx.get(url + "/health")
                    break
                except httpx.HTTPError:
                    time.sleep(0.5)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=os.environ.get("MEDCNN_CHROMIUM", "/usr/bin/chromium"),
                                             headless=True, args=CHROMIUM_FLAGS)
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(url + "/")
                page.wait_for_selector("#pacs:not([hidden])")
                page.click("#pacs summary")
                page.fill("#pacs-query", "Modality=MR")
                page.click("#pacs-search button")
                page.click("#pacs-studies tbody button")
                page.wait_for_function("['done', 'error'].includes(document.body.dataset.state)", timeout=600_000)
                path = out_dir / "workbench-pacs.png"
                page.screenshot(path=str(path), full_page=True)
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=60)
    return str(path.relative_to(ROOT))


def _zip(files: list[Path]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for f in files:
            z.write(f, f.name)
    return buf.getvalue()


def table(records: list[dict]) -> str:
    lines = ["| task (model) | input sent | requests (in flight) | errors | requests/s | p50 ms | p95 ms | "
             "server RSS MB: warm → after | commit |", "|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['task']} ({r['model']}) | {r['input']} | {r['requests']} ({r['concurrency']}) | {r['errors']} | "
                     f"{r['requests_per_s']:.2f} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | "
                     f"{r['rss_mb_warm']:.0f} → {r['rss_mb_after']:.0f} | `{r['commit']}` |")
    cmds = sorted({r["command"] for r in records})
    return "\n".join(lines + ["", "Command: " + "; ".join(f"`{c}`" for c in cmds) + "."])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_task_run_args(ap)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--no-screenshots", action="store_true")
    ap.add_argument("--screenshots-only", action="store_true", help="no load test; results and README untouched")
    ap.add_argument("--pacs-shot", action="store_true", help="only the PACS panel's screenshot (a local Orthanc "
                                                              "and the --segment run); results and README untouched")
    ap.add_argument("--shots", type=Path, default=ROOT / "docs" / "img")
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "serve.json")
    ap.add_argument("--readme", type=Path, default=ROOT / "docs" / "results.md")
    args = ap.parse_args()
    if args.pacs_shot:
        args.tasks = ["segment"]
        print(pacs_screenshot(common.task_runs(args)["segment"], args.shots))
        return
    runs = common.task_runs(args)
    meta = common.run_meta("bench/serve.py", [], "src/medcnn/serve")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    server = subprocess.Popen([sys.executable, "-m", "medcnn", "serve", *map(str, runs.values()), "--port", str(port)],
                              stdout=log, stderr=subprocess.STDOUT)
    records = []
    try:
        import httpx

        for _ in range(600):
            if server.poll() is not None:
                sys.exit(f"medcnn serve exited: {Path(log.name).read_text()[-3000:]}")
            try:
                models = httpx.get(url + "/v1/models").json()
                break
            except httpx.HTTPError:
                time.sleep(0.5)
        names = {m["task"]: m["name"] for m in models}
        rss_start = rss_mb(server.pid)
        for task in [] if args.screenshots_only else runs:
            files = inputs(task)
            asyncio.run(load(url, names[task], files, args.warmup, min(args.concurrency, args.warmup)))
            warm = rss_mb(server.pid)
            rec = asyncio.run(load(url, names[task], files, args.requests, args.concurrency))
            rec.update(task=task, model=names[task], rss_mb_start=round(rss_start, 1), rss_mb_warm=round(warm, 1),
                       rss_mb_after=round(rss_mb(server.pid), 1),
                       input=("TCIA DICOM MR slice (320×260)" if task == "classify"
                              else "MSD Hippocampus test volume (NIfTI)"), **meta)
            print(json.dumps({k: rec[k] for k in ("task", "requests_per_s", "p50_ms", "p95_ms", "errors",
                                                   "rss_mb_warm", "rss_mb_after")}), flush=True)
            records.append(rec)
        shots = [] if args.no_screenshots else screenshots(url, names, args.shots)
    finally:
        server.terminate()
        server.wait(timeout=60)
    if args.screenshots_only:
        print("\n".join(shots))
        return
    for r in records:
        r["screenshots"] = shots
    common.save_record(args.results, records)
    common.update_readme(args.readme, START, END, table(records))
    print(table(records))


if __name__ == "__main__":
    main()
