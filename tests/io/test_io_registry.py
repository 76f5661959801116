"""Dispatch, content sniffing, user readers and the errors every reader shares."""
from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
from pydicom.data import get_testdata_file

import medcnn.io.registry as registry
from medcnn.errors import InputError
from medcnn.io import image_suffix, image_suffixes, read_image, register_reader, supported_suffixes
from medcnn.io.image import Image


def _one_line_with_path(err: InputError, path) -> None:
    assert str(path) in str(err) and "\n" not in str(err)


def test_supported_suffixes():
    assert {".dcm", ".dicom", ".nii", ".nii.gz", ".png", ".jpg", ".jpeg", ".bmp", ".gif",
            ".tif", ".tiff"} <= set(supported_suffixes())


def test_import_is_lazy():
    code = "import sys, medcnn.io; print([m for m in ('pydicom', 'nibabel', 'PIL', 'tifffile') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_uppercase_and_unknown_suffix_sniffed(tmp_path):
    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "CT.DCM")
    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "ct.ima")  # Siemens-style name
    assert read_image(tmp_path / "CT.DCM").meta["modality"] == "CT"
    assert read_image(tmp_path / "ct.ima").meta["modality"] == "CT"


def test_nifti_gz_sniffed_without_suffix(tmp_path):
    from nibabel.testing import data_path

    shutil.copy(f"{data_path}/example4d.nii.gz", tmp_path / "volume.data")
    assert read_image(tmp_path / "volume.data").array.shape == (2, 128, 96, 24)


def test_register_reader(tmp_path):
    def read_npy(path):
        return Image.from_spacing(np.load(path)[None])

    try:
        register_reader(".npy", read_npy)
        assert ".npy" in supported_suffixes()
        np.save(tmp_path / "x.npy", np.arange(12.0).reshape(3, 4))
        assert read_image(tmp_path / "x.npy").array.shape == (1, 3, 4)
    finally:
        registry._READERS.pop(".npy", None)


def test_image_suffix_longest_first():
    order = image_suffixes()
    assert order.index(".nii.gz") < order.index(".nii") and set(order) == set(supported_suffixes())
    assert image_suffix("scan.NII.GZ") == ".nii.gz" and image_suffix("a/b/slice.tiff") == ".tiff"
    assert image_suffix("notes.txt") is None and image_suffix("scan.nii.gz.txt") is None


def test_registered_suffix_reaches_every_folder_search(tmp_path):
    """A reader registered at run time extends what the dataset finders, ``predict`` and the output
    folder names treat as an image."""
    from medcnn.data.enhance import find_sources
    from medcnn.data.segmentation import _images_in
    from medcnn.io.inputs import expand_folder, is_image_file
    from medcnn.tasks.outputs import output_stem

    (tmp_path / "x.npy").write_bytes(b"")
    (tmp_path / "x.npy.gz").write_bytes(b"")
    assert not _images_in(tmp_path) and not expand_folder(tmp_path)
    try:
        register_reader(".npy", lambda path: None)
        register_reader(".npy.gz", lambda path: None)
        files = [tmp_path / "x.npy", tmp_path / "x.npy.gz"]
        assert _images_in(tmp_path) == files and expand_folder(tmp_path) == files
        assert [s.id for s in find_sources(tmp_path)] == ["x.npy", "x.npy.gz"]
        assert is_image_file(files[0]) and output_stem(files[1]) == "x"
    finally:
        registry._READERS.pop(".npy", None)
        registry._READERS.pop(".npy.gz", None)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="file not found") as e:
        read_image(tmp_path / "nope.png")
    _one_line_with_path(e.value, tmp_path / "nope.png")


def test_zero_byte_png(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match="empty file") as e:
        read_image(tmp_path / "empty.png")
    _one_line_with_path(e.value, tmp_path / "empty.png")


def test_random_bytes_nii_gz(tmp_path):
    path = tmp_path / "noise.nii.gz"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(InputError, match="not a readable NIfTI") as e:
        read_image(path)
    _one_line_with_path(e.value, path)


def test_random_bytes_dcm(tmp_path):
    path = tmp_path / "noise.dcm"
    path.write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(InputError, match="not a DICOM") as e:
        read_image(path)
    _one_line_with_path(e.value, path)


def test_unknown_suffix(tmp_path):
    path = tmp_path / "notes.xyz"
    path.write_text("hello")
    with pytest.raises(InputError, match=r"unsupported file type '\.xyz'.*\.nii\.gz") as e:
        read_image(path)
    _one_line_with_path(e.value, path)


def test_empty_folder(tmp_path):
    with pytest.raises(InputError, match="no DICOM files found") as e:
        read_image(tmp_path)
    _one_line_with_path(e.value, tmp_path)


def test_file_size_limit(tmp_path, monkeypatch):
    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "ct.dcm")
    monkeypatch.setattr(registry, "MAX_FILE_BYTES", 1000)
    with pytest.raises(InputError, match="over the .* limit") as e:
        read_image(tmp_path / "ct.dcm")
    _one_line_with_path(e.value, tmp_path / "ct.dcm")


def test_pixel_limit(monkeypatch):
    monkeypatch.setattr(registry, "MAX_PIXELS", 1000)
    with pytest.raises(InputError, match="too large to decode"):
        read_image(get_testdata_file("CT_small.dcm"))
