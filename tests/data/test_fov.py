"""The field of view derived from a photograph, checked against DRIVE's official FOV masks and on the
IDRiD fundus photographs (no exudate outside it)."""
import numpy as np
import pytest

from conftest import require
from medcnn.data.fov import field_of_view, has_dark_surround
from medcnn.io import read_image


@pytest.mark.parametrize("split,stem", [("training", "21"), ("training", "33"), ("test", "01"), ("test", "12")])
def test_drive_fov_as_published(drive_dir, split, stem):
    image = read_image(next((drive_dir / split / "images").glob(f"{stem}_*")))
    ref = read_image(next((drive_dir / split / "mask").glob(f"{stem}_*"))).array[0] > 0
    assert has_dark_surround(image.array)
    fov = field_of_view(image.array).astype(bool)
    assert 2 * (fov & ref).sum() / (fov.sum() + ref.sum()) > 0.99


def test_idrid_exudates_lie_inside_the_derived_fov(data_root):
    root = require(data_root / "idrid_hard_exudates")
    for name in ("IDRiD_01", "IDRiD_02"):
        image = read_image(root / "images" / f"{name}.jpg")
        fov = field_of_view(image.array).astype(bool)
        lesions = read_image(root / "masks" / f"{name}.png").array[0] > 0
        assert 0.6 < fov.mean() < 0.8 and not (lesions & ~fov).any()


def test_no_dark_surround_no_fov(drive_dir):
    image = read_image(next((drive_dir / "training" / "images").glob("21_*"))).array
    inner = image[:, 200:400, 200:400]  # the retina only: no dark corners
    assert not has_dark_surround(inner) and field_of_view(inner).all()
    assert not has_dark_surround(np.full((3, 64, 64), 120, np.uint8))
