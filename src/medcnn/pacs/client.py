"""DICOMweb access (dicomweb-client): credentials, search, retrieval to a folder, storage.

Credentials never come from the command line: ``MEDCNN_DICOMWEB_USER`` / ``MEDCNN_DICOMWEB_PASSWORD``,
else the user's ``~/.netrc`` entry for the server's host, else none. A request that meets an unreachable
server or a busy one (429, 503, 504) is tried again with exponential back-off, ``MEDCNN_DICOMWEB_ATTEMPTS``
times in all (5 by default, about 30 s before giving up)."""
from __future__ import annotations

import netrc
import os
from pathlib import Path
from urllib.parse import urlparse

from medcnn.errors import InputError, ServerError

USER_ENV, PASSWORD_ENV = "MEDCNN_DICOMWEB_USER", "MEDCNN_DICOMWEB_PASSWORD"
ATTEMPTS_ENV = "MEDCNN_DICOMWEB_ATTEMPTS"  # tries per request (exponential back-off: 1, 2, 4 ... s); default 5
STUDY, SERIES, MODALITY, DESCRIPTION = "0020000D", "0020000E", "00080060", "0008103E"
SOP_INSTANCE = "00080018"


def credentials(url: str) -> tuple[str, str] | None:
    """(user, password) for ``url``: the environment, else ~/.netrc, else None."""
    if os.environ.get(USER_ENV):
        return os.environ[USER_ENV], os.environ.get(PASSWORD_ENV, "")
    host = urlparse(url).hostname or ""
    try:
        found = netrc.netrc().authenticators(host)
    except (FileNotFoundError, netrc.NetrcParseError):
        return None
    return (found[0], found[2] or "") if found else None


class Pacs:
    """One DICOMweb server. Every failure becomes one line: ServerError (unreachable, credentials,
    refused) or InputError (a study or series that is not there)."""

    def __init__(self, url: str):
        from dicomweb_client.api import DICOMwebClient
        from dicomweb_client.session_utils import create_session, create_session_from_user_pass

        self.url = url.rstrip("/")
        auth = credentials(self.url)
        session = create_session_from_user_pass(*auth) if auth else create_session()
        self.client = DICOMwebClient(self.url, session=session)
        self.client.set_http_retry_params(max_attempts=max(1, int(os.environ.get(ATTEMPTS_ENV, "5"))))

    def _call(self, what: str, fn, *args, **kw):
        import requests

        try:
            return fn(*args, **kw)
        except requests.exceptions.HTTPError as e:
            code = e.response.status_code if e.response is not None else None
            if code in (401, 403):
                raise ServerError(f"{what}: the server refused the credentials (HTTP {code}; set {USER_ENV} / "
                                  f"{PASSWORD_ENV} or a ~/.netrc entry)", self.url) from None
            if code == 404:
                raise InputError(f"{what}: not found on the server (HTTP 404)", self.url) from None
            raise ServerError(f"{what}: the server answered HTTP {code}", self.url) from None
        except requests.exceptions.RequestException as e:
            raise ServerError(f"{what}: server unreachable ({type(e).__name__})", self.url) from None

    def series_of(self, study: str) -> list[dict]:
        """The study's series as QIDO-RS gives them (each a DICOM JSON dict); refuses an unknown study."""
        found = self._call(f"study {study}", self.client.search_for_series, study_instance_uid=study)
        if not found:
            raise InputError(f"study {study}: not found on the server", self.url)
        return found

    def studies(self, filters: dict[str, str]) -> list[str]:
        """StudyInstanceUIDs matching QIDO-RS ``filters`` (attribute keyword or tag -> value)."""
        filters = study_filters(filters)
        found = self._call(f"study search {sorted(filters)}", self.client.search_for_studies, search_filters=filters)
        return [uid_of(s, STUDY) for s in found]

    def study_rows(self, filters: dict[str, str], limit: int = 50) -> list[dict]:
        """The matching studies, newest first, as what a study list shows without naming the patient:
        UID, date, description, modalities, number of series."""
        fields = ["StudyDate", "StudyDescription", "ModalitiesInStudy", "NumberOfStudyRelatedSeries"]
        filters = study_filters(filters)
        found = self._call(f"study search {sorted(filters)}", self.client.search_for_studies,
                           search_filters=filters, fields=fields, limit=limit)
        rows = [{"study": uid_of(s, STUDY), "date": uid_of(s, "00080020") or "",
                 "description": str(uid_of(s, "00081030") or ""),
                 "modalities": list((s.get("00080061") or {}).get("Value") or []),
                 "series": uid_of(s, "00201206")} for s in found]
        return sorted(rows, key=lambda r: r["date"], reverse=True)

    def fetch_series(self, study: str, series: str, dest: Path) -> Path:
        """The series' instances written to ``dest`` as 00000.dcm, 00001.dcm ... (no identity in names)."""
        instances = self._call(f"series {series} of study {study}", self.client.retrieve_series,
                               study_instance_uid=study, series_instance_uid=series)
        if not instances:
            raise InputError(f"series {series} of study {study}: no instances", self.url)
        dest.mkdir(parents=True, exist_ok=True)
        for i, ds in enumerate(instances):
            ds.save_as(dest / f"{i:05d}.dcm", enforce_file_format=True)
        return dest

    def store(self, datasets: list, study: str) -> None:
        """STOW-RS the datasets into ``study`` and check that the server kept every one (its answer's
        failed instances, then a QIDO-RS count per series: some servers drop what a filter refuses and
        still answer success). A rejection, whole or partial, is one ServerError line; what a partial
        one left on the server is deleted where the server supports DICOMweb DELETE, else named."""
        what = f"storing {len(datasets)} instances into study {study}"
        answer = self._call(what, self.client.store_instances, datasets=datasets, study_instance_uid=study)
        failed = len(getattr(answer, "FailedSOPSequence", None) or [])
        expected: dict[str, set[str]] = {}
        for ds in datasets:
            expected.setdefault(str(ds.SeriesInstanceUID), set()).add(str(ds.SOPInstanceUID))
        kept = {series: {uid_of(i, SOP_INSTANCE) for i in self._call(
            f"series {series} of study {study}", self.client.search_for_instances,
            study_instance_uid=study, series_instance_uid=series)} & uids for series, uids in expected.items()}
        n_kept = sum(len(k) for k in kept.values())
        if failed or n_kept < len(datasets):
            left = [series for series, k in kept.items() if k]
            left = [series for series in left if not self._delete(study, series)]
            raise ServerError(f"{what}: the server kept {n_kept} of {len(datasets)}"
                              + (f"; still on the server, incomplete: series {', '.join(left)}" if left else
                                 "; the partial series were deleted"), self.url)

    def _delete(self, study: str, series: str) -> bool:
        """DICOMweb DELETE of a series (not every server allows it); whether it went."""
        import logging

        quiet = logging.getLogger("dicomweb_client")
        level = quiet.level
        quiet.setLevel(logging.CRITICAL)  # its own log line would repeat ours
        try:
            self.client.delete_series(study_instance_uid=study, series_instance_uid=series)
            return True
        except Exception:  # refused or not supported: the caller names what is left
            return False
        finally:
            quiet.setLevel(level)


def study_filters(filters: dict[str, str]) -> dict[str, str]:
    """A study search's filters: ``Modality`` (a series attribute, which servers such as Orthanc match
    against no study) asked as ``ModalitiesInStudy``."""
    filters = dict(filters)
    if "Modality" in filters and "ModalitiesInStudy" not in filters:
        filters["ModalitiesInStudy"] = filters.pop("Modality")
    return filters


def uid_of(attrs: dict, tag: str) -> str | None:
    """An attribute's first value (a UID, a date ...) from a DICOM JSON (QIDO-RS) attribute dict."""
    value = (attrs.get(tag) or {}).get("Value") or [None]
    return value[0]
