"""A real TCIA MR series (24 slices) from the data mirror."""
from __future__ import annotations

import random
import shutil

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medcnn.errors import InputError
from medcnn.io import read_image


@pytest.fixture(scope="module")
def series(dicom_series_dir):
    files = sorted(p for p in dicom_series_dir.iterdir() if p.suffix == ".dcm")
    return files, [pydicom.dcmread(p) for p in files]


@pytest.fixture(scope="module")
def image(dicom_series_dir):
    return read_image(dicom_series_dir)


def test_shape_and_spacing(series, image):
    files, dss = series
    ds = dss[0]
    assert len(files) == 24
    assert image.array.shape == (1, ds.Columns, ds.Rows, 24) and image.array.dtype == np.float32
    normal = np.cross(np.array(ds.ImageOrientationPatient[:3], float), np.array(ds.ImageOrientationPatient[3:], float))
    z = np.sort([np.dot(normal, np.array(d.ImagePositionPatient, float)) for d in dss])
    assert image.spacing[:2] == pytest.approx([float(ds.PixelSpacing[1]), float(ds.PixelSpacing[0])])
    assert image.spacing[2] == pytest.approx(np.diff(z).mean(), rel=1e-3)
    assert image.spacing[2] != pytest.approx(float(ds.SliceThickness))  # from positions, not thickness


def test_slices_sorted_along_normal(series, image):
    _, dss = series
    ds = dss[0]
    normal = np.cross(np.array(ds.ImageOrientationPatient[:3], float), np.array(ds.ImageOrientationPatient[3:], float))
    by_pos = sorted(dss, key=lambda d: np.dot(normal, np.array(d.ImagePositionPatient, float)))
    for k in (0, 11, 23):
        np.testing.assert_array_equal(image.array[0, :, :, k], by_pos[k].pixel_array.T.astype(np.float32))
    assert image.meta["sop_instance_uids"] == [d.SOPInstanceUID for d in by_pos]
    # the affine maps voxel (0, 0, k) to slice k's position (LPS -> RAS: x and y negated)
    for k in (0, 23):
        ras = image.affine @ np.array([0, 0, k, 1.0])
        lps = np.array(by_pos[k].ImagePositionPatient, float)
        np.testing.assert_allclose(ras[:3], lps * [-1, -1, 1], atol=1e-3)


def test_file_order_does_not_matter(series, image, tmp_path):
    files, _ = series
    shuffled = files[:]
    random.Random(0).shuffle(shuffled)
    for i, p in enumerate(shuffled):
        shutil.copy(p, tmp_path / f"img{i:03d}")  # no suffix: found by the DICM marker
    again = read_image(tmp_path)
    np.testing.assert_array_equal(again.array, image.array)
    np.testing.assert_allclose(again.affine, image.affine)


def test_meta_has_no_patient_identity(series, image):
    _, dss = series
    text = repr(image.meta)
    for kw in ("PatientID", "PatientName", "PatientBirthDate"):
        value = str(dss[0].get(kw) or "")
        if value:
            assert value not in text
    assert image.meta["modality"] == "MR" and len(image.meta["sop_instance_uids"]) == 24


def test_inconsistent_slice_shapes(series, tmp_path):
    files, _ = series
    for p in files[:3]:
        shutil.copy(p, tmp_path / p.name)
    ds = pydicom.dcmread(files[3])  # a real slice of the same series, cropped
    ds.PixelData = ds.pixel_array[:100].tobytes()
    ds.Rows = 100
    ds.save_as(tmp_path / "cropped.dcm")
    with pytest.raises(InputError, match="different sizes"):
        read_image(tmp_path)


def test_two_series_in_one_folder(tmp_path):
    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copy(get_testdata_file(name), tmp_path / name)
    with pytest.raises(InputError, match="2 DICOM series") as e:
        read_image(tmp_path)
    assert str(tmp_path) in str(e.value) and "\n" not in str(e.value)


def test_empty_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(InputError, match="no DICOM files found"):
        read_image(tmp_path)


def test_non_images_and_other_files_are_skipped(series, image, tmp_path):
    files, _ = series
    for p in files:
        shutil.copy(p, tmp_path / p.name)
    (tmp_path / "README.txt").write_text("notes")
    shutil.copy(get_testdata_file("rtstruct.dcm"), tmp_path / "structures.dcm")  # no pixel data
    np.testing.assert_array_equal(read_image(tmp_path).array, image.array)


def test_repeated_positions_are_refused(series, tmp_path):
    files, _ = series
    for p in files[:4]:
        shutil.copy(p, tmp_path / p.name)
    shutil.copy(files[0], tmp_path / "copy_of_first.dcm")
    with pytest.raises(InputError, match="5 slices at only 4 positions"):
        read_image(tmp_path)


def test_missing_slice_is_refused_not_stretched(series, image, tmp_path):
    """A series with a slice missing in the middle must not be read onto a regular grid (every
    distance and volume in mm would be wrong): one clear error instead."""
    files, dss = series
    pos = np.array([d.ImagePositionPatient for d in dss], dtype=float)
    normal = np.cross(*np.array(dss[0].ImageOrientationPatient, dtype=float).reshape(2, 3))
    middle = int(np.argsort(pos @ normal)[len(files) // 2])
    for i, p in enumerate(files):
        if i != middle:
            shutil.copy(p, tmp_path / p.name)
    with pytest.raises(InputError, match=r"slice spacing varies from 6.5 to 13 mm .*\(missing slices\?\)"):
        read_image(tmp_path)


def test_geometry_matches_nibabel_dicom_wrapper(dicom_series_dir, image):
    """nibabel's own DICOM wrapper (voxel order rows, cols; LPS) as an independent reference."""
    from nibabel.nicom import dicomwrappers

    uid = image.meta["sop_instance_uids"][0]
    first = next(p for p in dicom_series_dir.iterdir()
                 if pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID == uid)
    wrapper = dicomwrappers.wrapper_from_file(str(first))
    ref = wrapper.affine.copy()
    ref[:2] *= -1  # LPS -> RAS
    np.testing.assert_allclose(image.affine[:, [1, 0, 3]], ref[:, [0, 1, 3]], atol=1e-4)
    np.testing.assert_array_equal(image.array[0, :, :, 0].T, wrapper.get_data())
