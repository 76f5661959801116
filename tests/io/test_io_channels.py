"""A case given as one file per channel (nnU-Net's CASE_0000 ...), on real LGG MR sequences."""
import nibabel as nib
import numpy as np
import pytest

from medcnn.errors import InputError
from medcnn.io.channels import channel_files, read_case


def test_any_channel_file_names_the_case(lgg_dir):
    first = sorted((lgg_dir / "imagesTr").glob("*_0000.nii.gz"))[0]
    case = first.name[: -len("_0000.nii.gz")]
    files = [first.with_name(f"{case}_{k:04d}.nii.gz") for k in range(3)]
    assert channel_files(files[2], 3) == channel_files(first, 3) == files
    assert channel_files(files[2], 1) == [files[2]]  # a one-channel model reads the file itself
    image = read_case(files[1], 3)
    assert image.channels == 3 and image.array.shape[1:3] == (112, 112)
    for k, f in enumerate(files):  # the channels in order, as the files hold them
        assert np.array_equal(image.array[k], np.asarray(nib.load(str(f)).dataobj).astype(image.array.dtype))


def test_a_missing_or_misfit_channel_is_one_line(lgg_dir, tmp_path):
    first = sorted((lgg_dir / "imagesTr").glob("*_0000.nii.gz"))[0]
    case = first.name[: -len("_0000.nii.gz")]
    for k in range(2):
        (tmp_path / f"{case}_{k:04d}.nii.gz").symlink_to(lgg_dir / "imagesTr" / f"{case}_{k:04d}.nii.gz")
    with pytest.raises(InputError, match=rf"{case}_0002.nii.gz is missing: the model takes 3 channels, one file each"):
        read_case(tmp_path / f"{case}_0000.nii.gz", 3)
    img = nib.load(str(first))
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:100], img.affine), str(tmp_path / f"{case}_0002.nii.gz"))
    with pytest.raises(InputError, match=r"shape \(100, 112, \d+\) differs from its image's \(112, 112, \d+\)"):
        read_case(tmp_path / f"{case}_0001.nii.gz", 3)


def test_a_photograph_named_like_a_channel_file_is_one_image(drive_dir, tmp_path):
    """IMG_1234.jpg or scan_0001.png holding all three channels: never split into channel files."""
    import shutil

    from medcnn.io.channels import case_files

    src = next((drive_dir / "training" / "images").iterdir())
    for name in ("IMG_1234.tif", "scan_0001.tif"):
        shutil.copy(src, tmp_path / name)
        assert channel_files(tmp_path / "IMG_1234.tif", 3) == [tmp_path / "IMG_1234.tif"]  # k >= channels
        assert case_files(tmp_path / name, 3) == [tmp_path / name]  # siblings absent: the file alone
        assert read_case(tmp_path / name, 3).channels == 3
