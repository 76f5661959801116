"""A real Orthanc (Debian's ``orthanc`` + ``orthanc-dicomweb``) started for the tests as their own
process: free ports, a temporary storage folder, a generated configuration (DICOMweb on,
authentication on, remote access off). A system Orthanc service is never used or touched."""
import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
USER, PASSWORD = "medcnn", "test-secret"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _require_orthanc():
    if not (Path(ORTHANC).is_file() and PLUGIN.is_file()):
        msg = "Orthanc with its DICOMweb plugin is not installed (make test installs Debian's orthanc, orthanc-dicomweb)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)


@contextlib.contextmanager
def _running_orthanc(root: Path, **extra):
    """(DICOMweb root URL, user, password) of a fresh Orthanc in ``root``, stopped on exit."""
    _require_orthanc()
    http, dicom = _free_port(), _free_port()
    config = {"Name": "medcnn-test", "StorageDirectory": str(root / "db"), "IndexDirectory": str(root / "db"),
              "HttpPort": http, "DicomPort": dicom, "RemoteAccessAllowed": False, "AuthenticationEnabled": True,
              "RegisteredUsers": {USER: PASSWORD}, "Plugins": [str(PLUGIN)], "HttpsCACertificates": "",
              "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "Ssl": False},
              "StableAge": 1, "SaveJobs": False, "LogExportedResources": False, **extra}
    cfg = root / "orthanc.json"
    cfg.write_text(json.dumps(config))
    log = open(root / "orthanc.log", "w")
    proc = subprocess.Popen([ORTHANC, str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{http}"
    auth = urllib.request.HTTPPasswordMgrWithDefaultRealm()
    auth.add_password(None, url, USER, PASSWORD)
    opener = urllib.request.build_opener(urllib.request.HTTPBasicAuthHandler(auth))
    deadline = time.monotonic() + 60
    while True:
        try:
            opener.open(f"{url}/system", timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"Orthanc did not start: {(root / 'orthanc.log').read_text()[-2000:]}")
            time.sleep(0.3)
    try:
        yield f"{url}/dicom-web", USER, PASSWORD
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory):
    """(DICOMweb root URL, user, password) of a fresh Orthanc; stopped after the session."""
    with _running_orthanc(tmp_path_factory.mktemp("orthanc")) as server:
        yield server


@pytest.fixture()
def picky_orthanc(tmp_path):
    """An Orthanc whose filter (a Lua ReceivedInstanceFilter) drops every structured report it is sent,
    while its STOW-RS answer still lists them as stored: a partial rejection."""
    (tmp_path / "filter.lua").write_text("function ReceivedInstanceFilter(dicom, origin, info)\n"
                                         "  return dicom.Modality ~= 'SR'\nend\n")
    with _running_orthanc(tmp_path, LuaScripts=[str(tmp_path / "filter.lua")]) as server:
        yield server
