"""A real Orthanc for the tests (medcnn.pacs.orthanc): its own process on free ports, a temporary
storage folder, authentication on. In CI (CI=true) a missing Orthanc fails; elsewhere the tests skip."""
import os

import pytest

from medcnn.pacs import orthanc as local

USER, PASSWORD = "medcnn", "test-secret"


def _running(root, **config):
    if not local.available():
        msg = "Orthanc with its DICOMweb plugin is not installed (make test installs Debian's orthanc, orthanc-dicomweb)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return local.local_orthanc(root, USER, PASSWORD, **config)


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory):
    """(DICOMweb root URL, user, password) of a fresh Orthanc; stopped after the session."""
    with _running(tmp_path_factory.mktemp("orthanc")) as server:
        yield server


@pytest.fixture()
def picky_orthanc(tmp_path):
    """An Orthanc whose filter (a Lua ReceivedInstanceFilter) drops every structured report it is sent,
    while its STOW-RS answer still lists them as stored: a partial rejection."""
    (tmp_path / "filter.lua").write_text("function ReceivedInstanceFilter(dicom, origin, info)\n"
                                         "  return dicom.Modality ~= 'SR'\nend\n")
    with _running(tmp_path / "orthanc", LuaScripts=[str(tmp_path / "filter.lua")]) as server:
        yield server
