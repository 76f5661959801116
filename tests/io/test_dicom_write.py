"""A volume written as a new DICOM series reads back to the same voxels at the same places."""
import numpy as np
import pytest

from medcnn.io import read_image
from medcnn.io.dicom_write import write_dicom_series


def _world(affine, idx):
    return (affine @ np.r_[idx, 1.0])[:3]


def test_a_nifti_volume_round_trips_through_dicom(hippocampus_dir, tmp_path):
    src = read_image(sorted((hippocampus_dir / "imagesTr").glob("*.nii.gz"))[0])
    files = write_dicom_series(src, tmp_path / "series", modality="MR")
    assert len(files) == src.spatial_shape[2] and [f.name for f in files][:2] == ["000000.dcm", "000001.dcm"]
    back = read_image(tmp_path / "series")
    assert back.spatial_shape == src.spatial_shape
    assert np.allclose(np.abs(np.linalg.det(back.affine[:3, :3])), np.abs(np.linalg.det(src.affine[:3, :3])))
    inv = np.linalg.inv(src.affine)
    rng = np.random.default_rng(0)
    for idx in rng.integers(0, np.array(back.spatial_shape), size=(200, 3)):  # same value at the same place
        j = np.round((inv @ np.r_[_world(back.affine, idx), 1.0])[:3]).astype(int)
        assert back.array[(0, *idx)] == pytest.approx(src.array[(0, *j)], abs=1e-3)
    assert back.meta.get("format") == "dicom"


def test_float_values_keep_their_precision_through_the_rescale(tmp_path):
    from medcnn.io.image import Image

    a = np.random.default_rng(1).normal(100.0, 30.0, size=(1, 12, 10, 5)).astype(np.float32)
    img = Image.from_spacing(a, spacing=(0.8, 0.9, 2.5), origin=(10, -20, 5))
    write_dicom_series(img, tmp_path / "s", modality="CT")
    back = read_image(tmp_path / "s")
    step = (a.max() - a.min()) / 65535
    assert np.abs(back.array - a).max() <= step and np.allclose(back.affine, img.affine, atol=1e-6)
