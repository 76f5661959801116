"""Dataset catalog and fetch: names, verification against the mirror, downloads, offline errors.

No test touches the network: ``fetch._open_url`` is replaced by a fake that serves bytes from
real mirror files (or fails), and by default by one that fails the test if called.
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import socket
import tarfile
import urllib.error
from pathlib import Path

import pytest

from conftest import require
from medcnn.data import catalog, fetch
from medcnn.errors import ChecksumError, ConfigError, DataNotFoundError, InputError, MedcnnError

BREAST_MD5 = "750601b1f35ba3300ea97c75c52ff8f6"


class _Response(io.BytesIO):
    def __init__(self, data: bytes):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}


def _serve(data: bytes):
    def opener(url, timeout):
        opener.calls.append(url)
        return _Response(data)
    opener.calls = []
    return opener


def _fail(exc: BaseException):
    def opener(url, timeout):
        raise exc
    return opener


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    def opener(url, timeout):
        pytest.fail(f"test tried to download {url}")
    monkeypatch.setattr(fetch, "_open_url", opener)
    monkeypatch.delenv("MEDCNN_OFFLINE", raising=False)


@pytest.fixture
def breast_npz(medmnist_dir) -> Path:
    return require(medmnist_dir / "breastmnist.npz")


def _flip_byte(path: Path, offset: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _one_line(err: BaseException) -> str:
    msg = str(err)
    assert "\n" not in msg
    return msg


# --- names -----------------------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("breastmnist", ("breastmnist", 28)),
    ("breastmnist_64", ("breastmnist", 64)),
    ("BreastMNIST", ("breastmnist", 28)),
    ("BREASTMNIST_224", ("breastmnist", 224)),
    ("breastmnist_28", ("breastmnist", 28)),
    (" pneumoniamnist_128 ", ("pneumoniamnist", 128)),
    ("organmnist3d_64", ("organmnist3d", 64)),
    ("AdrenalMNIST3D", ("adrenalmnist3d", 28)),
])
def test_medmnist_flag_parses_names_and_sizes(name, expected):
    assert catalog.medmnist_flag(name) == expected


@pytest.mark.parametrize("name, hint", [
    ("breastmnst", "did you mean 'breastmnist'"),
    ("organmnist3d_128", "sizes: 28, 64"),
    ("breastmnist_65", "sizes: 28, 64, 128, 224"),
    ("msd_hipocampus", "did you mean"),
    ("totally-unknown", "known:"),
])
def test_unknown_names_raise_with_suggestion(name, hint):
    with pytest.raises(ConfigError) as e:
        catalog.medmnist_flag(name)
    assert hint in _one_line(e.value)


def test_dataset_names_cover_every_flag_and_size():
    names = catalog.dataset_names()
    assert len(names) == len(set(names)) == 12 * 4 + 6 * 2 + 3  # + msd-hippocampus, drive, invesalius-ct
    for n in ("breastmnist", "breastmnist_64", "breastmnist_224", "organmnist3d",
              "organmnist3d_64", "msd-hippocampus", "drive", "invesalius-ct"):
        assert n in names
    assert "organmnist3d_128" not in names and "breastmnist_28" not in names
    for n in names[:-len(catalog.FOLDER_DATASETS)]:
        flag, size = catalog.medmnist_flag(n)
        assert catalog.medmnist_filename(flag, size) == f"{n}.npz"


def test_catalog_entries():
    assert catalog.medmnist_filename("breastmnist", 28) == "breastmnist.npz"
    assert catalog.medmnist_filename("breastmnist", 64) == "breastmnist_64.npz"
    assert catalog.MEDMNIST["breastmnist"]["n_channels"] == 1
    info = catalog.medmnist_info("BloodMNIST")
    assert info["task"] == "multi-class" and len(info["label"]) == 8
    url, md5 = catalog.medmnist_source("breastmnist", 28)
    assert md5 == BREAST_MD5 and url.startswith("https://zenodo.org/")
    with pytest.raises(MedcnnError, match="did you mean"):
        catalog.medmnist_info("bloodmnst")


def test_fetch_rejects_unknown_name(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'drive'"):
        fetch.fetch("drivee", tmp_path)


# --- data root -------------------------------------------------------------------------

def test_data_root_env_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDCNN_DATA", str(tmp_path / "mirror"))
    assert fetch.data_root() == tmp_path / "mirror"
    monkeypatch.delenv("MEDCNN_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert fetch.data_root() == tmp_path / "xdg" / "medcnn"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert fetch.data_root() == tmp_path / "home" / ".cache" / "medcnn"
    assert not (tmp_path / "home").exists()  # nothing is created


def test_fetch_defaults_to_data_root(monkeypatch, data_root, breast_npz):
    monkeypatch.setenv("MEDCNN_DATA", str(data_root))
    assert fetch.fetch("breastmnist", download=False) == breast_npz
    assert fetch.dataset_path("msd-hippocampus") == data_root / "msd_task04_hippocampus"


# --- present copies --------------------------------------------------------------------

def test_every_mirror_medmnist_file_verifies(data_root, medmnist_dir):
    files = sorted(medmnist_dir.glob("*.npz"))
    assert files
    for path in files:
        assert fetch.fetch(path.stem, data_root, download=False, progress=False) == path


def test_wrong_md5_copy_is_rejected_and_kept(tmp_path, breast_npz):
    copy = tmp_path / "medmnist" / "breastmnist.npz"
    copy.parent.mkdir()
    shutil.copyfile(breast_npz, copy)
    _flip_byte(copy)
    actual = hashlib.md5(copy.read_bytes()).hexdigest()
    with pytest.raises(ChecksumError) as e:
        fetch.fetch("breastmnist", tmp_path)
    msg = _one_line(e.value)
    assert str(copy) in msg and BREAST_MD5 in msg and actual in msg
    assert copy.exists()


def test_md5_is_memoised_by_path_size_and_mtime(monkeypatch, tmp_path, breast_npz):
    monkeypatch.setattr(fetch, "_MD5_MEMO", {})
    calls = []
    real = fetch._hash_file
    monkeypatch.setattr(fetch, "_hash_file", lambda p: calls.append(p) or real(p))
    copy = tmp_path / "medmnist" / "breastmnist.npz"
    copy.parent.mkdir()
    shutil.copyfile(breast_npz, copy)
    fetch.fetch("breastmnist", tmp_path)
    fetch.fetch("breastmnist", tmp_path)
    assert len(calls) == 1
    os.utime(copy, ns=(0, 10**9))
    fetch.fetch("breastmnist", tmp_path)
    assert len(calls) == 2
    assert list(tmp_path.iterdir()) == [tmp_path / "medmnist"]  # nothing written


def test_msd_hippocampus_mirror_verifies(data_root, hippocampus_dir):
    assert fetch.fetch("msd-hippocampus", data_root, download=False) == hippocampus_dir
    assert fetch.fetch("MSD_Hippocampus", data_root, download=False) == hippocampus_dir


def test_drive_mirror_verifies(data_root):
    drive = require(data_root / "drive")
    assert fetch.fetch("drive", data_root, download=False) == drive


def test_manifests_match_the_mirror_checksums(data_root):
    listing = require(data_root / "checksums.md5").read_text().splitlines()
    for name, folder, count in (("msd_hippocampus.md5", "msd_task04_hippocampus", 651),
                                ("drive.md5", "drive", 140)):
        manifest = catalog.read_manifest(name)
        assert len(manifest) == count
        mirror = {rel.split("/", 2)[2]: md5 for md5, rel in (line.split(None, 1) for line in listing)
                  if rel.startswith(f"./{folder}/")}
        assert manifest == mirror


def test_msd_corrupt_or_missing_member_is_named(tmp_path, hippocampus_dir):
    copy = tmp_path / "msd_task04_hippocampus"
    shutil.copytree(hippocampus_dir, copy)
    bad = copy / "imagesTr" / "hippocampus_001.nii.gz"
    _flip_byte(bad)
    with pytest.raises(ChecksumError) as e:
        fetch.fetch("msd-hippocampus", tmp_path)
    assert _one_line(e.value).startswith(f"{bad}: md5 ")
    gone = copy / "labelsTr" / "hippocampus_003.nii.gz"
    gone.unlink()
    with pytest.raises(DataNotFoundError) as e:
        fetch.fetch("msd-hippocampus", tmp_path)
    assert _one_line(e.value).startswith(f"{gone}: missing")


# --- absent and offline ----------------------------------------------------------------

@pytest.mark.parametrize("how", ["download=False", "MEDCNN_OFFLINE", "URLError", "timeout",
                                 "socket", "HTTP 404"])
def test_absent_and_offline_gives_one_line_error(monkeypatch, tmp_path, how):
    download = how != "download=False"
    if how == "MEDCNN_OFFLINE":
        monkeypatch.setenv("MEDCNN_OFFLINE", "1")
    errors = {"URLError": urllib.error.URLError("Name or service not known"),
              "timeout": TimeoutError("timed out"), "socket": socket.gaierror(-2, "no DNS"),
              "HTTP 404": urllib.error.HTTPError("u", 404, "Not Found", {}, None)}
    if how in errors:
        monkeypatch.setattr(fetch, "_open_url", _fail(errors[how]))
    with pytest.raises(DataNotFoundError) as e:
        fetch.fetch("breastmnist_64", tmp_path, download=download, progress=False)
    msg = _one_line(e.value)
    dest = tmp_path / "medmnist" / "breastmnist_64.npz"
    assert "breastmnist_64.npz" in msg and str(dest) in msg
    assert "https://zenodo.org/records/10519652/files/breastmnist_64.npz" in msg
    assert not dest.exists()
    assert not any(p.is_file() for p in tmp_path.rglob("*"))  # no temp file left


def test_msd_absent_offline_says_where_to_put_the_tarball(tmp_path):
    with pytest.raises(DataNotFoundError) as e:
        fetch.fetch("msd-hippocampus", tmp_path, download=False)
    msg = _one_line(e.value)
    assert str(tmp_path / "Task04_Hippocampus.tar") in msg
    assert catalog.MSD_HIPPOCAMPUS["url"] in msg and "msd_task04_hippocampus" in msg


def test_drive_absent_says_where_to_get_it(tmp_path):
    with pytest.raises(DataNotFoundError) as e:
        fetch.fetch("drive", tmp_path)
    msg = _one_line(e.value)
    assert str(tmp_path / "drive") in msg and "https://drive.grand-challenge.org/" in msg
    assert "training/{images,1st_manual,mask}" in msg and "2nd_manual" in msg


# --- downloads -------------------------------------------------------------------------

@pytest.mark.parametrize("progress", [False, True])
def test_download_verifies_and_renames(monkeypatch, tmp_path, breast_npz, progress):
    opener = _serve(breast_npz.read_bytes())
    monkeypatch.setattr(fetch, "_open_url", opener)
    path = fetch.fetch("BreastMNIST", tmp_path / "root", progress=progress)
    assert path == tmp_path / "root" / "medmnist" / "breastmnist.npz"
    assert opener.calls == [catalog.medmnist_source("breastmnist")[0]]
    assert path.read_bytes() == breast_npz.read_bytes()
    assert [p.name for p in path.parent.iterdir()] == ["breastmnist.npz"]
    assert fetch.fetch("breastmnist", tmp_path / "root") == path  # no second download
    assert len(opener.calls) == 1


def test_corrupt_download_is_rejected_and_leaves_nothing(monkeypatch, tmp_path, breast_npz):
    data = bytearray(breast_npz.read_bytes())
    data[100] ^= 0xFF
    monkeypatch.setattr(fetch, "_open_url", _serve(bytes(data)))
    with pytest.raises(ChecksumError) as e:
        fetch.fetch("breastmnist", tmp_path, progress=False)
    assert BREAST_MD5 in _one_line(e.value)
    assert list((tmp_path / "medmnist").iterdir()) == []


def test_interrupted_download_leaves_nothing(monkeypatch, tmp_path):
    class Broken(_Response):
        def read(self, n=-1):
            if self.tell():
                raise ConnectionResetError("connection reset by peer")
            return super().read(10)
    monkeypatch.setattr(fetch, "_open_url", lambda url, timeout: Broken(b"x" * 100))
    with pytest.raises(DataNotFoundError, match="connection reset"):
        fetch.fetch("breastmnist", tmp_path, progress=False)
    assert list((tmp_path / "medmnist").iterdir()) == []


def _msd_tarball(tmp_path: Path, hippocampus_dir: Path) -> Path:
    """The mirror packed like the official tarball, macOS junk included."""
    path = tmp_path / "served.tar"
    with tarfile.open(path, "w") as tar:
        tar.add(hippocampus_dir, arcname="Task04_Hippocampus")
        for junk in ("Task04_Hippocampus/._dataset.json", "Task04_Hippocampus/.DS_Store",
                     "._Task04_Hippocampus"):
            info = tarfile.TarInfo(junk)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"mac"))
    return path


def test_msd_download_extracts_into_the_mirror_layout(monkeypatch, tmp_path, hippocampus_dir):
    tarball = _msd_tarball(tmp_path, hippocampus_dir)
    data = tarball.read_bytes()
    monkeypatch.setitem(catalog.MSD_HIPPOCAMPUS, "md5", hashlib.md5(data).hexdigest())
    monkeypatch.setattr(fetch, "_open_url", _serve(data))
    root = tmp_path / "root"
    folder = fetch.fetch("msd-hippocampus", root, progress=False)
    assert folder == root / "msd_task04_hippocampus"
    assert sorted(p.name for p in folder.iterdir()) == [
        "dataset.json", "imagesTr", "imagesTs", "labelsTr"]
    assert not list(folder.rglob("._*")) and not list(folder.rglob(".DS_Store"))
    assert [p.name for p in root.iterdir()] == ["msd_task04_hippocampus"]  # tarball removed


def test_msd_hand_placed_tarball_is_used_and_kept(monkeypatch, tmp_path, hippocampus_dir):
    root = tmp_path / "root"
    root.mkdir()
    tarball = shutil.move(_msd_tarball(tmp_path, hippocampus_dir), root / "Task04_Hippocampus.tar")
    monkeypatch.setitem(catalog.MSD_HIPPOCAMPUS, "md5", fetch.file_md5(tarball))
    folder = fetch.fetch("msd-hippocampus", root, download=False)
    assert (folder / "dataset.json").is_file() and Path(tarball).is_file()


@pytest.mark.parametrize("evil", ["../evil.txt", "Task04_Hippocampus/../../evil.txt",
                                  "/tmp/medcnn-evil.txt"])
def test_tar_extraction_refuses_unsafe_members(monkeypatch, tmp_path, evil):
    root = tmp_path / "root"
    root.mkdir()
    tarball = _tar(root / "Task04_Hippocampus.tar",
                   {"Task04_Hippocampus/dataset.json": b"{}", evil: b"pwned"})
    with pytest.raises(InputError, match="unsafe member"):
        fetch.safe_extract(tarball, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    monkeypatch.setitem(catalog.MSD_HIPPOCAMPUS, "md5", fetch.file_md5(tarball))
    with pytest.raises(InputError, match="unsafe member"):
        fetch.fetch("msd-hippocampus", root, download=False)
    assert [p.name for p in root.iterdir()] == ["Task04_Hippocampus.tar"]
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/medcnn-evil.txt").exists()


def test_safe_extract_strips_top_folder_and_skips_junk(tmp_path):
    tarball = _tar(tmp_path / "a.tar", {"./Top/a.txt": b"a", "Top/sub/b.txt": b"b",
                                        "Top/._a.txt": b"j", "Top/.DS_Store": b"j"})
    assert fetch.safe_extract(tarball, tmp_path / "out") == 2
    assert (tmp_path / "out" / "a.txt").read_bytes() == b"a"
    assert (tmp_path / "out" / "sub" / "b.txt").read_bytes() == b"b"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.txt", "sub"]


def test_invesalius_ct_offline_says_where_to_get_it(tmp_path, monkeypatch):
    from medcnn.data.fetch import fetch
    from medcnn.errors import DataNotFoundError

    monkeypatch.setenv("MEDCNN_OFFLINE", "1")
    with pytest.raises(DataNotFoundError, match="invesalius-examples_3.1.99998-4_all.deb not found.*apt-get download"):
        fetch("invesalius-ct", tmp_path)


def _tar_bytes(files: dict[str, bytes], mode: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _ar_bytes(members: dict[str, bytes]) -> bytes:
    out = b"!<arch>\n"
    for name, data in members.items():
        out += f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode() + data
        out += b"\n" if len(data) % 2 else b""
    return out


def test_invesalius_hand_placed_package_is_converted_to_nifti(monkeypatch, tmp_path):
    """A package saved by hand (checksummed) becomes the NIfTI in HU, (z, y, x) -> (i, j, k)."""
    import nibabel as nib
    import numpy as np

    info = catalog.INVESALIUS_CT
    vol = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4) - 1000  # (z, y, x)
    plist = ("<?xml version='1.0'?><plist version='1.0'><dict><key>matrix</key><dict><key>shape</key>"
             "<array><integer>2</integer><integer>3</integer><integer>4</integer></array><key>dtype</key>"
             "<string>int16</string></dict><key>spacing</key><array><real>0.5</real><real>0.75</real>"
             "<real>1.5</real></array><key>modality</key><string>CT</string></dict></plist>").encode()
    inv3 = _tar_bytes({"Cranium/main.plist": plist, "Cranium/matrix.dat": vol.tobytes()}, "w:gz")
    deb_bytes = _ar_bytes({"debian-binary": b"2.0\n", "data.tar.gz": _tar_bytes({"./" + info["member"]: inv3}, "w:gz")})
    folder = tmp_path / info["folder"]
    folder.mkdir()
    (folder / info["archive"]).write_bytes(deb_bytes)
    monkeypatch.setitem(info, "md5", hashlib.md5(deb_bytes).hexdigest())
    assert fetch.fetch("invesalius-ct", tmp_path, download=False) == folder
    nii = nib.load(str(folder / info["nifti"]))
    np.testing.assert_array_equal(np.asarray(nii.dataobj), vol.transpose(2, 1, 0))
    np.testing.assert_allclose(nii.header.get_zooms(), (0.5, 0.75, 1.5))
