"""A throwaway local Orthanc (Debian's ``orthanc`` + ``orthanc-dicomweb``) to try the PACS round trip
with, and what the tests and the workbench screenshots run against: its own process on free ports,
a storage folder of the caller's, a generated configuration (DICOMweb on, authentication on, remote
access off). A system Orthanc service is never used or touched.

    with local_orthanc(Path("/tmp/pacs")) as (url, user, password):
        ...  # url is the DICOMweb root, e.g. http://127.0.0.1:PORT/dicom-web
"""
from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Iterator

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def available() -> bool:
    return Path(ORTHANC).is_file() and PLUGIN.is_file()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def local_orthanc(root: Path, user: str = "medcnn", password: str | None = None, timeout_s: float = 60,
                  **config) -> Iterator[tuple[str, str, str]]:
    """(DICOMweb root URL, user, password) of a fresh Orthanc keeping its files in ``root``; stopped on
    exit. ``config``: more Orthanc settings (e.g. ``LuaScripts``)."""
    if not available():
        raise RuntimeError("Orthanc with its DICOMweb plugin is not installed (Debian: orthanc, orthanc-dicomweb)")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    password = password or secrets.token_urlsafe(12)
    http = _free_port()
    settings = {"Name": "medcnn-local", "StorageDirectory": str(root / "db"), "IndexDirectory": str(root / "db"),
                "HttpPort": http, "DicomPort": _free_port(), "RemoteAccessAllowed": False,
                "AuthenticationEnabled": True, "RegisteredUsers": {user: password}, "Plugins": [str(PLUGIN)],
                "HttpsCACertificates": "", "StableAge": 1, "SaveJobs": False, "LogExportedResources": False,
                "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "Ssl": False}, **config}
    cfg = root / "orthanc.json"
    cfg.write_text(json.dumps(settings))
    url = f"http://127.0.0.1:{http}"
    auth = urllib.request.HTTPPasswordMgrWithDefaultRealm()
    auth.add_password(None, url, user, password)
    opener = urllib.request.build_opener(urllib.request.HTTPBasicAuthHandler(auth))
    with open(root / "orthanc.log", "w") as log:
        proc = subprocess.Popen([ORTHANC, str(cfg)], stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    opener.open(f"{url}/system", timeout=2).read()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"Orthanc did not start: {(root / 'orthanc.log').read_text()[-2000:]}") from None
                    time.sleep(0.3)
            yield f"{url}/dicom-web", user, password
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
