"""A segmentation dataset can be named as `medcnn fetch` names it, so a plan's `data` works on any
machine with the data root."""
import pytest

from medcnn.data.segmentation import load_segmentation
from medcnn.errors import InputError


def test_a_named_dataset_is_found_in_the_data_root(hippocampus_dir):
    for name in ("msd-hippocampus", "msd_task04_hippocampus"):
        data = load_segmentation(name)
        assert data.source == str(hippocampus_dir) and len(data.cases) > 200


def test_a_named_dataset_that_is_absent_says_how_to_fetch_it(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDCNN_DATA", str(tmp_path))
    with pytest.raises(InputError, match="run: medcnn fetch drive"):
        load_segmentation("drive")
    with pytest.raises(InputError, match="not a folder"):
        load_segmentation("no-such-dataset")
