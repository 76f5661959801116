"""Measurements in physical units: known volumes, geometry invariance, and real MSD label maps."""
import numpy as np
import pytest

from medcnn.errors import InputError
from medcnn.io.image import Image
from medcnn.measure import compare, measure, voxel_size_mm
from medcnn.measure.components import to_dict, to_rows


def _rotation_z(deg: float) -> np.ndarray:
    t = np.deg2rad(deg)
    return np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])


def test_box_volume_and_box_on_an_oblique_anisotropic_grid():
    """A 4x5x6-voxel box on 0.5x1.0x2.5 mm voxels is 60 mm³, however the grid is rotated."""
    mask = np.zeros((20, 20, 20), np.uint8)
    mask[2:6, 3:8, 4:10] = 1
    affine = np.eye(4)
    affine[:3, :3] = _rotation_z(30) @ np.diag([0.5, 1.0, 2.5])
    affine[:3, 3] = [10, -20, 5]
    (m,) = measure(mask, affine)
    assert m.voxels == 120 and m.n_components == 1
    assert m.size_mm == pytest.approx(120 * 0.5 * 1.0 * 2.5)
    c = m.components[0]
    assert c.centroid_voxel == pytest.approx([3.5, 5.0, 6.5])
    expect = affine[:3, :3] @ [3.5, 5.0, 6.5] + affine[:3, 3]
    assert c.centroid_ras_mm == pytest.approx(expect, abs=1e-3)
    assert c.centroid_lps_mm == pytest.approx([-expect[0], -expect[1], expect[2]], abs=1e-3)
    assert c.bbox_voxel == [[2, 5], [3, 7], [4, 9]]
    # the patient-space box is the hull of the voxel box's corners (voxel edges at +-0.5)
    assert c.bbox_ras_mm[2] == pytest.approx([5 + 3.5 * 2.5, 5 + 9.5 * 2.5])


def test_components_sorted_and_counted_with_full_connectivity():
    mask = np.zeros((10, 10), np.int16)
    mask[0:2, 0:2] = 1          # 4 px
    mask[5:8, 5:8] = 1          # 9 px
    mask[2, 2] = 1              # touches the first square diagonally: same component (8-connectivity)
    mask[9, 0] = 2
    out = measure(Image.from_spacing(mask[None], spacing=(0.5, 0.25)), label_names={1: "lesion"}, labels=[3])
    lesion, two, three = out
    assert (lesion.name, lesion.n_components) == ("lesion", 2)
    assert [c.voxels for c in lesion.components] == [9, 5]
    assert lesion.size_mm == pytest.approx(14 * 0.125)
    assert lesion.components[0].centroid_lps_mm == []  # 2D: no patient frame
    assert (two.voxels, three.voxels, three.n_components) == (1, 0, 0)
    rows = to_rows(out, Image.from_spacing(mask[None], spacing=(0.5, 0.25)))
    assert rows[0]["unit"] == "mm2" and [r["component"] for r in rows if r["label"] == 1] == [0, 1, 2]


def test_sizes_without_a_recorded_voxel_size_are_voxel_counts(tmp_path):
    """A mask from a photograph, or a NIfTI written without a voxel size (LGG's release), is measured
    in pixels / voxels, never called mm; the unit survives writing the mask as NIfTI and reading it back."""
    import nibabel as nib
    from PIL import Image as PILImage

    from medcnn.io import read_image
    from medcnn.io.nifti import write_nifti

    mask = np.zeros((6, 8), np.uint8)
    mask[1:3, 2:5] = 1
    PILImage.fromarray(mask).save(tmp_path / "m.png")
    png = read_image(tmp_path / "m.png")
    assert to_dict(measure(png), png)["unit"] == "pixels"
    vol = np.zeros((5, 5, 4), np.uint8)
    vol[1:3, 1:3, 1:3] = 1
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "v.nii.gz")  # xyzt_units left at "unknown"
    img = read_image(tmp_path / "v.nii.gz")
    assert to_rows(measure(img), img)[0]["unit"] == "voxels"
    again = read_image(write_nifti(img, tmp_path / "out.nii.gz"))
    assert to_dict(measure(again), again)["unit"] == "voxels"
    nib.save(nib.Nifti1Image(vol, np.diag([0.9, 0.9, 3.0, 1.0])), tmp_path / "s.nii.gz")  # a size, no unit: mm
    spaced = read_image(tmp_path / "s.nii.gz")
    assert to_dict(measure(spaced), spaced)["unit"] == "mm3" and measure(spaced)[0].size_mm == pytest.approx(8 * 2.43)


def test_bad_masks_are_refused():
    with pytest.raises(InputError, match="non-integer"):
        measure(np.full((4, 4), 0.5), np.eye(3))
    with pytest.raises(InputError, match="one channel"):
        measure(Image.from_spacing(np.zeros((2, 4, 4), np.uint8)))


def test_empty_mask_measures_zero_not_an_error():
    rows = measure(Image.from_spacing(np.zeros((1, 6, 6, 6), np.uint8), (0.5, 0.5, 2.0)), labels=[1, 2])
    assert [(r.label, r.voxels, r.size_mm, r.n_components) for r in rows] == [(1, 0, 0.0, 0), (2, 0, 0.0, 0)]


def test_real_label_map_matches_nibabel_and_is_orientation_invariant(hippocampus_dir, tmp_path):
    """MSD hippocampus labels: volume = voxel count x voxel volume from the header; reorienting the
    file (same anatomy, other voxel order) changes neither the volumes nor the RAS centroids."""
    import nibabel as nib

    from medcnn.io import read_image

    path = hippocampus_dir / "labelsTr" / "hippocampus_001.nii.gz"
    ref = nib.load(str(path))
    data = np.asarray(ref.dataobj)
    zooms = np.prod(ref.header.get_zooms()[:3])
    img = read_image(path)
    out = {m.label: m for m in measure(img, label_names={1: "Anterior", 2: "Posterior"})}
    assert set(out) == {1, 2}
    for lab in (1, 2):
        assert out[lab].size_mm == pytest.approx((data == lab).sum() * zooms, rel=1e-6)
    flipped = nib.Nifti1Image(data[::-1, :, ::-1].copy(), ref.affine @ np.array(
        [[-1, 0, 0, data.shape[0] - 1], [0, 1, 0, 0], [0, 0, -1, data.shape[2] - 1], [0, 0, 0, 1]]))
    nib.save(flipped, tmp_path / "flipped.nii.gz")
    again = {m.label: m for m in measure(read_image(tmp_path / "flipped.nii.gz"))}
    for lab in (1, 2):
        assert again[lab].size_mm == pytest.approx(out[lab].size_mm)
        assert again[lab].components[0].centroid_ras_mm == pytest.approx(out[lab].components[0].centroid_ras_mm, abs=1e-3)


def test_compare_two_real_scans(hippocampus_dir):
    from medcnn.io import read_image

    a = measure(read_image(hippocampus_dir / "labelsTr" / "hippocampus_001.nii.gz"))
    b = measure(read_image(hippocampus_dir / "labelsTr" / "hippocampus_003.nii.gz"))
    rows = compare(a, b)
    assert [r["label"] for r in rows] == [1, 2]
    for r, ma, mb in zip(rows, a, b):
        assert r["size_change"] == pytest.approx(mb.size_mm - ma.size_mm, abs=1e-3)
        assert r["size_change_pct"] == pytest.approx(100 * (mb.size_mm - ma.size_mm) / ma.size_mm, abs=0.01)
    assert compare([], a)[0]["size_change_pct"] is None  # absent before: no percentage


def test_voxel_size_uses_the_determinant():
    aff = np.eye(4)
    aff[:3, :3] = [[0, 2, 0], [1, 0, 0], [0, 0, 3]]  # permuted axes
    assert voxel_size_mm(aff) == pytest.approx(6.0)
