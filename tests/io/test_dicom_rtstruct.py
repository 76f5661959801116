"""RTSTRUCT out and back: contours written with rt-utils land on the voxels of the mask they came from,
on an oblique series with non-square pixels too (where rt-utils alone would swap the pixel spacings)."""
import numpy as np
import pydicom
import pytest

from medcnn.errors import InputError
from medcnn.io import read_image
from medcnn.io.dicom_rtstruct import read_rtstruct, write_rtstruct
from medcnn.io.dicom_write import write_dicom_series
from medcnn.io.image import Image


def _oblique(array, spacing=(0.8, 0.5, 2.0), angle=0.3):
    c, s = np.cos(angle), np.sin(angle)
    aff = np.diag([*spacing, 1.0])
    aff[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ aff[:3, :3]
    aff[:3, 3] = [10, -20, 30]
    return Image(array, aff, {})


def test_contours_rasterise_back_to_the_mask_on_an_oblique_anisotropic_series(hippocampus_dir, tmp_path):
    case = sorted((hippocampus_dir / "labelsTr").glob("*.nii.gz"))[0]
    label = read_image(case).array.astype(np.uint8)
    label[0, 5:9, 5:9, 3] = 1  # a square with a hole and a lone voxel on one slice
    label[0, 6:8, 6:8, 3] = 0
    label[0, 1, 1, 4] = 2
    image = read_image(hippocampus_dir / "imagesTr" / case.name)
    write_dicom_series(_oblique(image.array), tmp_path / "series")
    series = read_image(tmp_path / "series")
    names = {0: "background", 1: "anterior", 2: "posterior"}
    path = write_rtstruct(tmp_path / "series", Image(label, series.affine, {}), names, tmp_path / "rt.dcm",
                          source_image=series)
    ds = pydicom.dcmread(path)
    assert ds.Modality == "RTSTRUCT" and [r.ROIName for r in ds.StructureSetROISequence] == ["anterior", "posterior"]
    assert str(ds.PatientName) == "" and ds.Manufacturer == "medcnn"  # no identity unless keep_phi
    back = read_rtstruct(path, series, names).array[0]
    np.testing.assert_array_equal(back, label[0])


def test_an_rtstruct_needs_a_dicom_series(tmp_path):
    label = Image.from_spacing(np.zeros((1, 8, 8, 4), np.uint8))
    with pytest.raises(InputError, match="DICOM series"):
        write_rtstruct(tmp_path, label, {1: "x"}, tmp_path / "rt.dcm")
