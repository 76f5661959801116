"""A segmentation dataset written in nnU-Net v2's raw format and read back: the same cases, pixels,
labels and geometry (real DRIVE photographs as PNG, real LGG MR volumes as NIfTI)."""
import json

import numpy as np
import pytest

from conftest import mini_lgg
from medcnn.cli.main import main
from medcnn.data.nnunet import write_nnunet
from medcnn.data.segmentation import load_segmentation, read_case
from medcnn.errors import InputError


def _same(a, b):
    assert [c.id for c in a.cases] == [c.id for c in b.cases] and a.labels == b.labels
    assert [c.id for c in a.test_cases] == [c.id for c in b.test_cases]
    for ca, cb in zip(a.cases[:3] + a.test_cases[:1], b.cases[:3] + b.test_cases[:1]):
        (ia, la, _), (ib, lb, _) = read_case(ca, a.labels), read_case(cb, b.labels)
        assert np.array_equal(ia.array, ib.array) and np.array_equal(la.array, lb.array)
        assert np.allclose(ia.affine, ib.affine) and ia.spatial_dims == ib.spatial_dims


def test_drive_photographs_round_trip_as_png(drive_dir, tmp_path):
    src = load_segmentation(drive_dir)
    dest = tmp_path / "Dataset001_DRIVE"
    assert main(["convert", str(drive_dir), "--out", str(dest)]) == 0
    meta = json.loads((dest / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "R", "1": "G", "2": "B"} and meta["labels"] == {"background": 0, "foreground": 1}
    assert meta["numTraining"] == 20 and meta["file_ending"] == ".png"
    assert len(list((dest / "imagesTr").iterdir())) == 60 and len(list((dest / "labelsTs").iterdir())) == 20
    _same(src, load_segmentation(dest))
    assert main(["convert", str(drive_dir), "--out", str(dest)]) == 2  # never over an existing folder


def test_mr_volumes_round_trip_as_nifti(lgg_dir, tmp_path):
    src = load_segmentation(mini_lgg(lgg_dir, tmp_path / "lgg", n=5, n_test=1))
    dest = write_nnunet(src, tmp_path / "Dataset002_LGG")
    meta = json.loads((dest / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "pre-contrast", "1": "FLAIR", "2": "post-contrast"}
    assert meta["file_ending"] == ".nii.gz" and meta["numTraining"] == 4
    _same(src, load_segmentation(dest))
    with pytest.raises(InputError, match="exists"):
        write_nnunet(src, dest)
