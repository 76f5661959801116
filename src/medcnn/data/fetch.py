"""Put a public dataset into the data root, verified against its official MD5.

``fetch(name)`` returns the dataset's path under the data root (``$MEDCNN_DATA``, else the
per-user cache ``$XDG_CACHE_HOME/medcnn`` or ``~/.cache/medcnn``), in the layout of the shared
data mirror, so ``MEDCNN_DATA=/path/to/mirror`` works as is:

- MedMNIST ``<root>/medmnist/<flag>[_<size>].npz``;
- ``msd-hippocampus`` ``<root>/msd_task04_hippocampus/`` (dataset.json, imagesTr, labelsTr, imagesTs);
- ``drive`` ``<root>/drive/`` (training/, test/);
- ``invesalius-ct`` ``<root>/invesalius_ct/cranium_ct.nii.gz`` (a head CT in HU, from Debian).

A present copy is verified and used without touching the network. An absent one is
downloaded from the official source when allowed (not ``download=False``, not
``MEDCNN_OFFLINE=1``, network reachable), else :class:`DataNotFoundError` says on one line
which file is missing, where to get it and where to put it. Nothing is ever written into the
data root except by a download, so a read-only mirror works.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import tarfile
import tempfile
import urllib.error
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from medcnn import __version__
from medcnn.data import catalog, fetch_ct
from medcnn.errors import ChecksumError, DataNotFoundError, InputError

TIMEOUT_S = 60
_CHUNK = 1 << 20
# md5 of files already hashed in this process, keyed by (absolute path, size, mtime_ns).
_MD5_MEMO: dict[tuple[str, int, int], str] = {}


def data_root() -> Path:
    """``$MEDCNN_DATA``, else ``$XDG_CACHE_HOME/medcnn`` or ``~/.cache/medcnn``; not created."""
    env = os.environ.get("MEDCNN_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "medcnn"


def in_data_root(name: str | os.PathLike) -> Path:
    """``name`` itself when it exists; else, for a bare folder name (no path separator) that the data
    root holds, that folder (a packed model's plan names its data this way); else ``name`` unchanged."""
    path = Path(name).expanduser()
    if path.exists() or len(path.parts) != 1:
        return path
    candidate = data_root() / path
    return candidate if candidate.is_dir() else path


def offline() -> bool:
    """True when ``MEDCNN_OFFLINE`` forbids downloads."""
    return os.environ.get("MEDCNN_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _open_url(url: str, timeout: float) -> BinaryIO:
    """Open ``url`` for streaming (the one place that touches the network; tests replace it)."""
    import urllib.request
    request = urllib.request.Request(url, headers={"User-Agent": f"medcnn/{__version__}"})
    return urllib.request.urlopen(request, timeout=timeout)


def _canonical(name: str) -> str:
    key = name.strip().lower().replace("_", "-")
    return "msd-hippocampus" if key in ("msd-hippocampus", "msd-task04-hippocampus") else key


def dataset_path(name: str, root: str | os.PathLike | None = None) -> Path:
    """Where ``fetch(name, root)`` puts the dataset; checks nothing."""
    root = Path(root).expanduser() if root is not None else data_root()
    info = catalog.FOLDER_DATASETS.get(_canonical(name))
    if info:
        return root / info["folder"]
    return root / "medmnist" / catalog.medmnist_filename(*catalog.medmnist_flag(name))


def fetch(name: str, root: str | os.PathLike | None = None, *, download: bool = True,
          progress: bool = True) -> Path:
    """Make dataset ``name`` present and verified under ``root``; return its path."""
    root = Path(root).expanduser() if root is not None else data_root()
    key = _canonical(name)
    if key == "msd-hippocampus":
        return _fetch_msd(root, download, progress)
    if key == "drive":
        return _fetch_drive(root)
    if key == "invesalius-ct":
        return _fetch_invesalius(root, download, progress)
    flag, size = catalog.medmnist_flag(name)
    dest = dataset_path(name, root)
    url, md5 = catalog.medmnist_source(flag, size)
    if dest.is_file():
        _check(dest, md5, flag if size == catalog.DEFAULT_SIZE else f"{flag}_{size}")
    else:
        _download(url, dest, md5, download=download, progress=progress)
    return dest


# --- checksums -------------------------------------------------------------------------

def _hash_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_md5(path: str | os.PathLike) -> str:
    """MD5 of a file, memoised in-process by (path, size, mtime)."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _MD5_MEMO:
        _MD5_MEMO[key] = _hash_file(Path(path))
    return _MD5_MEMO[key]


def _check(path: Path, md5: str, name: str) -> None:
    actual = file_md5(path)
    if actual != md5:
        raise ChecksumError(
            f"md5 {actual} is not the official {md5}: the file is corrupt or not the official "
            f"release; remove it and run `medcnn fetch {name}` again", path)


def verify_folder(folder: Path, manifest: str, hint: str) -> None:
    """Check every file of a committed ``*.md5`` manifest under ``folder``; extra files are ignored."""
    missing: list[Path] = []
    bad: list[tuple[Path, str, str]] = []
    for rel, md5 in catalog.read_manifest(manifest).items():
        path = folder / rel
        try:
            actual = file_md5(path)
        except OSError:
            missing.append(path)
            continue
        if actual != md5:
            bad.append((path, md5, actual))
    if missing:
        more = f" (and {len(missing) - 1} more files)" if len(missing) > 1 else ""
        raise DataNotFoundError(f"missing from the copy in {folder}{more}; {hint}", missing[0])
    if bad:
        path, md5, actual = bad[0]
        more = f" ({len(bad) - 1} more files differ)" if len(bad) > 1 else ""
        raise ChecksumError(f"md5 {actual} is not the official {md5}{more}; {hint}", path)


# --- downloads -------------------------------------------------------------------------

def _no_download_reason(download: bool) -> str | None:
    if offline():
        return "MEDCNN_OFFLINE forbids downloading"
    if not download:
        return "downloading is disabled"
    return None


def _missing(dest: Path, url: str, reason: str, extra: str = "") -> DataNotFoundError:
    return DataNotFoundError(
        f"{dest.name} not found and {reason}; download {url} and save it at exactly this "
        f"path{extra}", dest)


def _describe(err: BaseException) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return str(err.reason)
    return str(err) or type(err).__name__


@contextlib.contextmanager
def _progress_bar(show: bool, label: str, total: int | None) -> Iterator[Callable[[int], None]]:
    if not show:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True)) as bar:
        task = bar.add_task(f"downloading {label}", total=total)
        yield lambda n: bar.advance(task, n)


def _stream(url: str, out: BinaryIO, progress: bool, label: str) -> str:
    """Copy ``url`` into ``out``; return the md5 of what was written."""
    digest = hashlib.md5(usedforsecurity=False)
    with _open_url(url, timeout=TIMEOUT_S) as response:
        length = getattr(response, "headers", {}).get("Content-Length")
        total = int(length) if length and str(length).isdigit() else None
        with _progress_bar(progress, label, total) as advance:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                advance(len(chunk))
    return digest.hexdigest()


def _download(url: str, dest: Path, md5: str, *, download: bool, progress: bool,
              extra: str = "") -> None:
    """Download ``url`` to ``dest`` via a temporary file beside it, verified, then renamed."""
    reason = _no_download_reason(download)
    if reason:
        raise _missing(dest, url, reason, extra)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    except OSError as e:
        raise _missing(dest, url, f"its folder is not writable ({e.strerror or e})", extra) from e
    from http.client import HTTPException
    network_errors = (urllib.error.URLError, HTTPException, TimeoutError, ConnectionError,
                      socket.gaierror, socket.herror)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                actual = _stream(url, out, progress, dest.name)
            except network_errors as e:
                raise _missing(dest, url, f"the download failed ({_describe(e)})", extra) from e
        if actual != md5:
            raise ChecksumError(f"the download from {url} has md5 {actual}, not the official "
                                f"{md5}; it was discarded, try again", dest)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    st = dest.stat()
    _MD5_MEMO[(os.path.abspath(dest), st.st_size, st.st_mtime_ns)] = md5


# --- folder datasets -------------------------------------------------------------------

def _present(folder: Path) -> bool:
    return folder.is_dir() and any(folder.iterdir())


def _junk(parts: tuple[str, ...]) -> bool:
    return any(p.startswith("._") or p == ".DS_Store" or p == "__MACOSX" for p in parts)


def safe_extract(archive: Path, dest: Path) -> int:
    """Extract the regular files of a tar into ``dest``; return how many were written.

    A single top-level folder (``Task04_Hippocampus/``) is stripped, macOS junk (``._*``,
    ``.DS_Store``) and links are skipped, and a member with an absolute path or ``..`` is
    refused with :class:`InputError` before anything is written.
    """
    with tarfile.open(archive) as tar:
        members = []
        for m in tar.getmembers():
            parts = tuple(p for p in PurePosixPath(m.name).parts if p != ".")
            if m.name.startswith(("/", "\\")) or ".." in parts or ":" in (parts or ("",))[0]:
                raise InputError(f"refusing to extract unsafe member {m.name!r}", archive)
            if parts and not _junk(parts) and (m.isfile() or m.isdir()):
                members.append((parts, m))
        tops = {parts[0] for parts, _ in members}
        strip = len(tops) == 1 and all(len(p) > 1 or m.isdir() for p, m in members)
        written = 0
        for parts, m in members:
            rel = parts[1:] if strip else parts
            if not rel or m.isdir():
                continue
            target = dest.joinpath(*rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(m) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, _CHUNK)
            written += 1
    return written


def _fetch_msd(root: Path, download: bool, progress: bool) -> Path:
    info = catalog.MSD_HIPPOCAMPUS
    folder, archive = root / info["folder"], root / info["archive"]
    redo = f"remove {folder} and run `medcnn fetch {info['name']}` again"
    if _present(folder):
        verify_folder(folder, info["manifest"], redo)
        return folder
    downloaded = not archive.is_file()
    if downloaded:  # a tarball saved there by hand is used (and kept)
        extra = f" (or unpack it there and rename Task04_Hippocampus to {folder.name})"
        _download(info["url"], archive, info["md5"], download=download, progress=progress,
                  extra=extra)
    else:
        _check(archive, info["md5"], info["name"])
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=root))
    try:
        safe_extract(archive, tmp)
        verify_folder(tmp, info["manifest"], f"the archive {archive} is incomplete")
        if folder.is_dir():
            folder.rmdir()  # empty, else _present() would have been true
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if downloaded:
        archive.unlink(missing_ok=True)
    return folder


def _fetch_drive(root: Path) -> Path:
    info = catalog.DRIVE
    folder = root / info["folder"]
    if _present(folder):
        verify_folder(folder, info["manifest"],
                      f"restore it from the official DRIVE release ({info['homepage']})")
        return folder
    raise DataNotFoundError(
        f"DRIVE not found and it has no public download: register at {info['homepage']}, "
        f"download the training and test sets and put them in this folder as {info['layout']}",
        folder)


def _fetch_invesalius(root: Path, download: bool, progress: bool) -> Path:
    info = catalog.INVESALIUS_CT
    folder = root / info["folder"]
    nifti = folder / info["nifti"]
    if nifti.is_file():
        return folder
    deb = folder / info["archive"]
    if deb.is_file():
        _check(deb, info["md5"], info["name"])
    else:
        _download(info["url"], deb, info["md5"], download=download, progress=progress,
                  extra=f" (or `apt-get download invesalius-examples` into {folder})")
    fetch_ct.package_to_nifti(deb, nifti)
    return folder
