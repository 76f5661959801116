"""The normalisation registry: bit-identical to the version-1 code on real data, and its contracts."""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import require
from medcnn.data.preprocess import image_to_tensor
from medcnn.errors import ConfigError, InputError
from medcnn.io import read_image
from medcnn.transforms.normalize import Normalizer, get_normalizer, normalizer_names, register_normalizer

EXPECTED = Path(__file__).parents[1] / "fixtures" / "normalize_v1"
V2_NAME = {"uint8": "uint8", "percentile": "percentile_clip"}  # preprocessing.intensity of version 1


def sha256(a) -> str:
    a = a.numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest() + f":{a.dtype}:{list(a.shape)}"


@pytest.fixture(scope="module")
def expected():
    return json.loads((EXPECTED / "expected.json").read_text())


@pytest.fixture(scope="module")
def images(data_root, breast_npz, hippocampus_dir, drive_dir, tmp_path_factory):
    """The inputs of tests/fixtures/normalize_v1/make_expected.py."""
    from PIL import Image as PILImage

    png = tmp_path_factory.mktemp("norm") / "breast_test_0.png"
    PILImage.fromarray(np.load(breast_npz)["test_images"][0]).save(png)
    return {"breast": read_image(png),
            "hippo": read_image(require(hippocampus_dir / "imagesTs" / "hippocampus_002.nii.gz")),
            "drive": read_image(require(drive_dir / "training" / "images" / "21_training.tif"))}


def test_classification_is_bit_identical_to_version_1(expected, images):
    for key, digest in expected["classify"].items():
        name, size, channels, mode = key.split("-")
        x = image_to_tensor(images[name], json.loads(size), int(channels), V2_NAME[mode])
        assert sha256(x) == digest, key


def test_segmentation_is_bit_identical_to_version_1(expected, images):
    for key, digest in expected["segment"].items():
        name, mode = key.split("-")
        norm = get_normalizer(mode, expected["ct_args"] if mode == "ct" else {})
        assert sha256(norm.forward(images[name].array)) == digest, key


def test_enhancement_is_bit_identical_to_version_1(expected, dicom_series_dir):
    volume = read_image(dicom_series_dir).array
    slices = np.moveaxis(volume, -1, 1)
    for mode, norm in (("percentile", get_normalizer("percentile_affine")),
                       ("window", get_normalizer("window", {"window": expected["window"]}))):
        rec, fitted = expected["enhance"][mode], norm.fit(volume)
        assert list(fitted.window) == rec["window"]
        x = torch.from_numpy(fitted.forward(slices[:, 10]))  # training: numpy arithmetic
        t = fitted.forward(torch.from_numpy(np.asarray(volume, np.float32)))  # inference: torch arithmetic
        assert (sha256(x), sha256(fitted.inverse(x)), sha256(t), sha256(fitted.inverse(t))) == \
            (rec["train"], rec["train_inverse"], rec["infer"], rec["infer_inverse"]), mode


def test_affine_normalisers_invert_and_fit():
    a = np.linspace(-2000, 3000, 2 * 16 * 16, dtype=np.float32).reshape(2, 16, 16)
    w = get_normalizer("window", {"window": [-1000, 1000]})
    assert w.invertible and w.floor == -1024.0 and w.fit(a) is w
    assert np.allclose(w.inverse(w.forward(a)), a, atol=1e-3) and w.forward(a).min() < 0  # nothing clipped
    p = get_normalizer("percentile_affine")
    fitted = p.fit(a)
    assert fitted.floor is None and np.allclose(fitted.inverse(p.forward(a)), a, atol=1e-3)
    with pytest.raises(ConfigError):
        p.inverse(a)  # which image's percentiles? fit first
    assert p.fit(np.full((1, 4, 4), 7.0)).window == (7.0, 8.0)  # a constant image still maps


def test_clipping_normalisers():
    a = np.arange(1000, dtype=np.float32).reshape(1, 25, 40)
    x = get_normalizer("percentile_clip").forward(a)
    assert x.dtype == np.float32 and x.min() == 0 and x.max() == 1
    assert get_normalizer("uint8").forward(np.full((1, 2, 2), 255, np.uint8)).max() == 1.0
    with pytest.raises(InputError):
        get_normalizer("percentile_clip").forward(np.array([[[np.nan, 1.0]]], np.float32))
    ct = get_normalizer("ct", {"clip": [-100, 100], "mean": 0, "std": 100})
    assert ct.forward(np.array([[[-500.0, 50.0, 500.0]]])).tolist() == [[[-1.0, 0.5, 1.0]]]
    assert get_normalizer("ct").clip == (-1024.0, 3071.0)
    assert not get_normalizer("zscore").invertible


def test_registry_errors_and_extension():
    with pytest.raises(ConfigError, match="unknown 'minmax'"):
        get_normalizer("minmax")
    with pytest.raises(ConfigError, match="normalization_args"):
        get_normalizer("zscore", {"window": [0, 1]})
    with pytest.raises(ConfigError, match="lo < hi"):
        get_normalizer("window", {"window": [1, 0]})

    class Halve(Normalizer):
        name = "halve"

        def forward(self, a, source=None):
            return np.asarray(a, np.float32) / 2

    register_normalizer("halve", Halve)
    try:
        assert "halve" in normalizer_names() and get_normalizer("halve").forward(np.ones((1, 2, 2)))[0, 0, 0] == 0.5
    finally:
        from medcnn.transforms import normalize

        normalize._REGISTRY.pop("halve")
