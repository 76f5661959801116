"""NIfTI files shipped with nibabel's test data."""
from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest
from nibabel.testing import data_path

from medcnn.errors import InputError
from medcnn.io import read_image


def _path(name):
    return os.path.join(data_path, name)


def test_anatomical_3d():
    ref = nib.load(_path("anatomical.nii"))
    img = read_image(_path("anatomical.nii"))
    assert img.array.shape == (1, 33, 41, 25)
    assert img.array.dtype == np.int16 and img.array.dtype.isnative  # stored >i2, unscaled
    np.testing.assert_array_equal(img.array[0], ref.get_fdata())
    np.testing.assert_allclose(img.affine, ref.affine)
    assert img.spacing == pytest.approx(ref.header.get_zooms()[:3])
    assert img.meta["format"] == "nifti"
    assert img.meta["qform_code"] == int(ref.header["qform_code"])
    assert img.meta["sform_code"] == int(ref.header["sform_code"])


def test_4d_channels_first():
    ref = nib.load(_path("example4d.nii.gz"))
    img = read_image(_path("example4d.nii.gz"))
    assert ref.shape == (128, 96, 24, 2) and img.array.shape == (2, 128, 96, 24)
    np.testing.assert_array_equal(img.array[1], ref.get_fdata()[..., 1])


def test_scaled_data_is_float32():
    ref = nib.load(_path("functional.nii"))  # int16 on disk with scl_slope != 1
    img = read_image(_path("functional.nii"))
    assert img.array.dtype == np.float32 and img.array.shape == (20, 17, 21, 3)
    np.testing.assert_allclose(img.array, np.moveaxis(ref.get_fdata(), -1, 0), rtol=1e-6)


def test_nifti2():
    img = read_image(_path("example_nifti2.nii.gz"))
    assert img.array.shape == (2, 32, 20, 12)


def test_2d_slice(tmp_path):
    ref = nib.load(_path("anatomical.nii"))
    slice2d = np.asarray(ref.dataobj)[:, :, 12]
    nib.save(nib.Nifti1Image(slice2d, ref.affine), tmp_path / "slice.nii.gz")
    img = read_image(tmp_path / "slice.nii.gz")
    assert img.array.shape == (1, 33, 41) and img.affine.shape == (3, 3)
    np.testing.assert_array_equal(img.array[0], slice2d)
    assert img.spacing == pytest.approx([2.0, 2.0])


def test_cifti_is_refused():
    with pytest.raises(InputError, match="not a spatial NIfTI"):
        read_image(_path("row_major.dconn.nii"))


def test_truncated_nifti(tmp_path):
    path = tmp_path / "cut.nii"
    path.write_bytes(open(_path("anatomical.nii"), "rb").read()[:20000])
    with pytest.raises(InputError, match="truncated") as e:
        read_image(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
