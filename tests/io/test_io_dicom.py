"""Single DICOM files: pydicom's own test files (and pydicom-data's)."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medcnn.errors import InputError
from medcnn.io import read_image


def _ds(name):
    return pydicom.dcmread(get_testdata_file(name))


def test_ct_small_rescale_and_spacing():
    path = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    img = read_image(path)
    assert img.array.shape == (1, ds.Rows, ds.Columns) and img.array.dtype == np.float32
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert float(ds.RescaleIntercept) == -1024  # so the check below really tests the rescale
    np.testing.assert_allclose(img.array[0], expected)
    assert img.spacing == pytest.approx([float(v) for v in ds.PixelSpacing])
    assert img.meta["modality"] == "CT" and img.meta["rescale_applied"] is True and img.length_unit == "mm"
    assert img.meta["sop_instance_uids"] == [ds.SOPInstanceUID]


def test_mr_small_meta_has_no_identifying_values():
    path = get_testdata_file("MR_small.dcm")
    ds = pydicom.dcmread(path)
    img = read_image(path)
    np.testing.assert_array_equal(img.array[0], ds.pixel_array.astype(np.float32))
    assert img.spacing == pytest.approx([0.3125, 0.3125])
    assert img.meta["window_center"] == 600.0 and img.meta["window_width"] == 1600.0
    assert img.meta["series_instance_uid"] == ds.SeriesInstanceUID
    text = repr(img.meta)
    for kw in ("PatientName", "PatientID", "PatientBirthDate"):
        value = str(ds.get(kw) or "")
        assert not value or value not in text


def test_monochrome1_is_inverted():
    ds = _ds("RG1_UNCR.dcm")  # CR, MONOCHROME1, 15 bits stored, from pydicom-data
    assert ds.PhotometricInterpretation == "MONOCHROME1" and ds.BitsStored == 15
    img = read_image(get_testdata_file("RG1_UNCR.dcm"))
    np.testing.assert_array_equal(img.array[0], (2**15 - 1) - ds.pixel_array.astype(np.float32))
    assert img.meta["inverted"] is True
    assert img.meta["window_center"] == (2**15 - 1) - float(ds.WindowCenter)
    assert img.spacing == (1.0, 1.0)  # the file's PixelSpacing is 0.000: ignored
    assert img.length_unit is None  # so sizes on it are pixel counts, not mm²


@pytest.mark.parametrize("name", ["SC_rgb.dcm", "US1_UNCR.dcm"])
def test_rgb_has_three_channels(name):
    ds = _ds(name)
    img = read_image(get_testdata_file(name))
    assert img.array.shape == (3, ds.Rows, ds.Columns)
    np.testing.assert_array_equal(img.array, ds.pixel_array.transpose(2, 0, 1).astype(np.float32))


def test_ybr_is_converted_to_rgb():
    rgb = read_image(get_testdata_file("SC_rgb.dcm")).array
    ybr = read_image(get_testdata_file("SC_ybr_full_uncompressed.dcm")).array  # same picture in YBR_FULL
    assert ybr.shape == rgb.shape and np.abs(ybr - rgb).max() <= 8


def test_palette_color_becomes_rgb():
    img = read_image(get_testdata_file("OBXXXX1A.dcm"))
    assert img.array.shape == (3, 600, 800) and 200 < img.array.max() <= 255


def test_multiframe_is_a_volume():
    ds = _ds("emri_small.dcm")
    img = read_image(get_testdata_file("emri_small.dcm"))
    assert img.array.shape == (1, ds.Columns, ds.Rows, ds.NumberOfFrames)
    np.testing.assert_array_equal(img.array[0], ds.pixel_array.transpose(2, 1, 0))
    assert img.spacing == pytest.approx([1.0, 1.0, float(ds.SpacingBetweenSlices)])  # no PixelSpacing


def test_enhanced_multiframe_uses_per_frame_positions():
    ds = _ds("eCT_Supplemental.dcm")
    img = read_image(get_testdata_file("eCT_Supplemental.dcm"))
    z = [float(f.PlanePositionSequence[0].ImagePositionPatient[2]) for f in ds.PerFrameFunctionalGroupsSequence]
    assert img.array.shape == (1, 512, 512, 2)
    assert img.spacing == pytest.approx([0.388672, 0.388672, abs(z[1] - z[0])])


def test_no_pixel_data():
    with pytest.raises(InputError, match="no pixel data"):
        read_image(get_testdata_file("rtstruct.dcm"))


@pytest.mark.parametrize("name", ["MR_small_jpeg_ls_lossless.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm"])
def test_compressed_dicom_decodes_like_uncompressed(name):
    """The installed decoders (pylibjpeg) read lossless compressed variants of the same image."""
    ref = read_image(get_testdata_file("MR_small.dcm")).array
    assert np.array_equal(read_image(get_testdata_file(name)).array, ref)


def test_missing_decoder_names_syntax_and_packages(monkeypatch):
    """Without a decoder plugin, the error names the transfer syntax and the packages to install."""
    import pydicom.pixels.decoders.base as base

    monkeypatch.setattr(base.Decoder, "is_available", property(lambda self: False))
    with pytest.raises(InputError, match="JPEG-LS Lossless.*install one of"):
        read_image(get_testdata_file("MR_small_jpeg_ls_lossless.dcm"))


@pytest.mark.parametrize("name", ["MR_truncated.dcm", "emri_small_jpeg_2k_lossless_too_short.dcm"])
def test_truncated_real_files(name):
    with pytest.raises(InputError, match="truncated|corrupt|cannot decode"):
        read_image(get_testdata_file(name))


def test_truncated_copy(tmp_path):
    path = tmp_path / "ct.dcm"
    path.write_bytes(open(get_testdata_file("CT_small.dcm"), "rb").read()[:500])
    with pytest.raises(InputError, match="truncated") as e:
        read_image(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_dicom_without_suffix_is_sniffed(tmp_path):
    path = tmp_path / "IM0001"
    path.write_bytes(open(get_testdata_file("MR_small.dcm"), "rb").read())
    assert read_image(path).meta["modality"] == "MR"
