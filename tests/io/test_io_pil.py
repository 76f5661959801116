"""PNG / TIFF / JPEG written from real DICOM pixels, read back."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest
import tifffile
from PIL import Image as PILImage
from pydicom.data import get_testdata_file

from medcnn.errors import InputError
from medcnn.io import read_image


@pytest.fixture(scope="module")
def ct_uint8():
    """CT_small windowed (W400/L40) to 8 bits."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    return (np.clip((hu - (40 - 200)) / 400, 0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def us_rgb():
    return pydicom.dcmread(get_testdata_file("US1_UNCR.dcm")).pixel_array  # (480, 640, 3) uint8


def test_png_gray_roundtrip(tmp_path, ct_uint8):
    PILImage.fromarray(ct_uint8).save(tmp_path / "ct.png")
    img = read_image(tmp_path / "ct.png")
    assert img.array.dtype == np.uint8 and img.array.shape == (1, 128, 128)
    np.testing.assert_array_equal(img.array[0], ct_uint8)
    assert img.spacing == (1.0, 1.0)
    assert img.meta == {"format": "png", "modality": None, "source": "ct.png", "spatial_unit": "unknown"}
    assert img.length_unit is None  # a photograph records no pixel size


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif"])
def test_a_grey_image_saved_as_rgb_is_read_as_grey(tmp_path, ct_uint8, suffix):
    """X-ray and ultrasound exports are often RGB with three equal channels: one channel, flagged."""
    path = tmp_path / f"ct{suffix}"
    PILImage.fromarray(np.dstack([ct_uint8] * 3)).save(path, **({"quality": 90} if suffix == ".jpg" else {}))
    img = read_image(path)
    assert img.array.shape == (1, 128, 128) and img.meta["grey_saved_as_rgb"]
    if suffix != ".jpg":
        np.testing.assert_array_equal(img.array[0], ct_uint8)
    tinted = np.dstack([ct_uint8, ct_uint8, np.maximum(ct_uint8, 3) - 3])  # a slight tint is colour
    PILImage.fromarray(tinted).save(tmp_path / "tint.png")
    assert read_image(tmp_path / "tint.png").array.shape == (3, 128, 128)


def test_png_rgb_and_rgba(tmp_path, us_rgb):
    PILImage.fromarray(us_rgb).save(tmp_path / "us.png")
    alpha = np.dstack([us_rgb, np.full(us_rgb.shape[:2], 128, np.uint8)])
    PILImage.fromarray(alpha).save(tmp_path / "us_alpha.png")
    for name in ("us.png", "us_alpha.png"):
        img = read_image(tmp_path / name)
        assert img.array.shape == (3, 480, 640)
        np.testing.assert_array_equal(img.array, us_rgb.transpose(2, 0, 1))


def test_png_16bit(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    raw = ds.pixel_array.astype(np.uint16)
    PILImage.fromarray(raw).save(tmp_path / "mr16.png")
    img = read_image(tmp_path / "mr16.png")
    assert img.array.dtype == np.uint16
    np.testing.assert_array_equal(img.array[0], raw)


def test_png_palette_and_gray_alpha(tmp_path, ct_uint8, us_rgb):
    PILImage.fromarray(ct_uint8).convert("P").save(tmp_path / "gray_p.png")  # gray palette
    PILImage.fromarray(ct_uint8).convert("LA").save(tmp_path / "la.png")
    PILImage.fromarray(us_rgb).quantize(64).save(tmp_path / "rgb_p.png")
    assert read_image(tmp_path / "gray_p.png").array.shape == (1, 128, 128)
    np.testing.assert_array_equal(read_image(tmp_path / "la.png").array[0], ct_uint8)
    assert read_image(tmp_path / "rgb_p.png").array.shape == (3, 480, 640)


def test_jpeg_and_bmp(tmp_path, ct_uint8):
    PILImage.fromarray(ct_uint8).save(tmp_path / "ct.jpg", quality=95)
    PILImage.fromarray(ct_uint8).save(tmp_path / "ct.bmp")
    jpg = read_image(tmp_path / "ct.jpg")
    assert jpg.array.shape == (1, 128, 128) and jpg.meta["format"] == "jpeg"
    assert np.abs(jpg.array[0].astype(int) - ct_uint8).mean() < 3
    np.testing.assert_array_equal(read_image(tmp_path / "ct.bmp").array[0], ct_uint8)


def test_tiff_pillow_written(tmp_path, ct_uint8, us_rgb):
    PILImage.fromarray(ct_uint8).save(tmp_path / "ct.tif")
    PILImage.fromarray(us_rgb).save(tmp_path / "us.tiff")
    img = read_image(tmp_path / "ct.tif")
    assert img.meta["format"] == "tiff" and img.array.dtype == np.uint8
    np.testing.assert_array_equal(img.array[0], ct_uint8)
    np.testing.assert_array_equal(read_image(tmp_path / "us.tiff").array, us_rgb.transpose(2, 0, 1))


def test_tiff_lzw_falls_back_to_pillow(tmp_path, ct_uint8):
    PILImage.fromarray(ct_uint8).save(tmp_path / "lzw.tif", compression="tiff_lzw")
    np.testing.assert_array_equal(read_image(tmp_path / "lzw.tif").array[0], ct_uint8)


def test_tiff_16bit_and_stack(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("emri_small.dcm"))
    frames = ds.pixel_array.astype(np.uint16)  # (10, 64, 64)
    tifffile.imwrite(tmp_path / "one.tif", frames[3])
    np.testing.assert_array_equal(read_image(tmp_path / "one.tif").array[0], frames[3])
    tifffile.imwrite(tmp_path / "stack.tif", frames)
    with pytest.raises(InputError, match="not a single 2D image"):
        read_image(tmp_path / "stack.tif")


def test_truncated_png(tmp_path, ct_uint8):
    PILImage.fromarray(ct_uint8).save(tmp_path / "ct.png")
    data = (tmp_path / "ct.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated") as e:
        read_image(tmp_path / "cut.png")
    assert "\n" not in str(e.value)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch, ct_uint8):
    import medcnn.io.pil as pil

    PILImage.fromarray(ct_uint8).save(tmp_path / "ct.png")
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", PILImage.MAX_IMAGE_PIXELS)  # restored afterwards
    monkeypatch.setattr(pil, "MAX_PIXELS", 1000)  # Pillow's bomb check fires (128 x 128 > 2 x 1000)
    with pytest.raises(InputError, match="too large"):
        read_image(tmp_path / "ct.png")


def test_drive_tiff_and_gif_from_mirror(data_root):
    """Real DRIVE fundus image (RGB TIFF) and vessel annotation (palette GIF)."""
    from conftest import require

    folder = require(data_root / "drive" / "training")
    tif = read_image(require(folder / "images" / "21_training.tif"))
    assert tif.array.shape == (3, 584, 565) and tif.array.dtype == np.uint8
    np.testing.assert_array_equal(tif.array, np.asarray(PILImage.open(folder / "images" / "21_training.tif"))
                                  .transpose(2, 0, 1))
    gif = read_image(require(folder / "1st_manual" / "21_manual1.gif"))
    assert gif.array.shape == (1, 584, 565) and gif.meta["format"] == "gif"
    assert set(np.unique(gif.array)) == {0, 255}


def test_tiff_palette_and_miniswhite(tmp_path, us_rgb, ct_uint8):
    quantized = PILImage.fromarray(us_rgb).quantize(64)
    quantized.save(tmp_path / "pal.tif")
    img = read_image(tmp_path / "pal.tif")
    np.testing.assert_array_equal(img.array, np.asarray(quantized.convert("RGB")).transpose(2, 0, 1))
    tifffile.imwrite(tmp_path / "white.tif", 255 - ct_uint8, photometric="miniswhite")
    np.testing.assert_array_equal(read_image(tmp_path / "white.tif").array[0], ct_uint8)
