"""Degradation models on real images: an MSD hippocampus MR slice, pydicom-data's CT slice."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydicom.data import get_testdata_file

from medcnn.errors import ConfigError
from medcnn.io import read_image
from medcnn.transforms.degrade import KINDS, Degradation, downsample


@pytest.fixture(scope="module")
def mr(hippocampus_dir):
    """Four real MR slices (B, 1, H, W), normalised to [0, 1] by the volume's 0.5-99.5 percentiles."""
    img = read_image(sorted((hippocampus_dir / "imagesTr").glob("hippocampus_*.nii.gz"))[0])
    a = img.array[0]
    lo, hi = np.percentile(a, [0.5, 99.5])
    a = np.clip((a - lo) / (hi - lo), 0, 1)
    mid = a.shape[2] // 2
    return torch.from_numpy(np.stack([a[:, :, mid + k] for k in (-3, -1, 1, 3)])[:, None]).float()


@pytest.fixture(scope="module")
def ct_slice():
    img = read_image(get_testdata_file("693_UNCR.dcm"))
    hu = F.avg_pool2d(torch.from_numpy(img.array[None]).float(), 4)[..., :, 8:120]  # 128 x 112 (not square)
    window = (-1024.0, 3071.0)
    return (hu - window[0]) / (window[1] - window[0]), window, float(img.spacing[0]) * 4


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_gaussian_adds_the_stated_sigma_and_is_seeded(mr):
    d = Degradation("gaussian", (25 / 255,))
    y, lv = d(mr, gen())
    assert torch.allclose(lv, torch.full((4,), 25 / 255))
    assert (y - mr).std().item() == pytest.approx(25 / 255, rel=0.03)
    assert abs((y - mr).mean().item()) < 0.005
    assert torch.equal(d(mr, gen())[0], y) and not torch.equal(d(mr, gen(1))[0], y)


def test_rician_magnitude_statistics(mr):
    s = 0.05
    mr = mr.repeat(20, 1, 1, 1)  # 20 noise draws of each slice: means precise to about 2 %
    y, _ = Degradation("rician", (s,))(mr, gen())
    # a Rician magnitude has E[y^2] = x^2 + 2 sigma^2 (the noise power of both channels)
    assert (y ** 2 - mr ** 2).mean().item() == pytest.approx(2 * s ** 2, rel=0.05)
    bright = mr > 0.5  # strong signal: almost Gaussian, sigma wide
    assert (y - mr)[bright].std().item() == pytest.approx(s, rel=0.1)
    assert (y >= 0).all() and (y - mr).mean() > 0  # magnitudes are biased upwards


def test_speckle_is_multiplicative(mr):
    s = 0.2
    y, _ = Degradation("speckle", (s,))(mr, gen())
    assert torch.equal(y[mr == 0], mr[mr == 0])  # no signal, no speckle
    bright = mr > 0.3
    assert ((y - mr)[bright] / mr[bright]).std().item() == pytest.approx(s, rel=0.1)
    # correlated over about a pixel: neighbouring noise values are alike
    n = ((y - mr) / mr.clamp_min(1e-6))[bright.nonzero(as_tuple=True)[0].unique()]
    r = torch.corrcoef(torch.stack([n[..., :-1].flatten(), n[..., 1:].flatten()]))[0, 1]
    assert r > 0.3


def test_downsample_2d_loses_detail_with_the_factor(mr):
    e2 = (Degradation("downsample", (2,))(mr)[0] - mr).abs().mean()
    e4 = (Degradation("downsample", (4,))(mr)[0] - mr).abs().mean()
    assert 0 < e2 < e4
    # block averages of the low-resolution grid are kept (bicubic up, then averaged again)
    low = F.avg_pool2d(F.pad(mr, (0, (-mr.shape[-1]) % 2, 0, (-mr.shape[-2]) % 2), mode="replicate"), 2)
    assert downsample(mr, 2).shape == mr.shape and low.shape[-1] == math.ceil(mr.shape[-1] / 2)


def test_downsample_3d_makes_thick_slices(hippocampus_dir):
    img = read_image(sorted((hippocampus_dir / "imagesTr").glob("hippocampus_*.nii.gz"))[0])
    v = torch.from_numpy(img.array[None]).float()
    v = v / v.max()
    thick = downsample(v, 4)
    assert thick.shape == v.shape
    assert torch.allclose(thick.mean(dim=-1), v.mean(dim=-1), atol=0.05)  # in-plane content stays
    dz = lambda t: (t[..., 1:] - t[..., :-1]).abs().mean()
    dx = lambda t: (t[:, :, 1:] - t[:, :, :-1]).abs().mean()
    # blurred across slices far more than in-plane (in-plane only by the partial volume of thick slices)
    assert dz(thick) / dz(v) < 0.6 < dx(thick) / dx(v)


def test_lowdose_ct_on_a_non_square_slice(ct_slice):
    x, window, mm = ct_slice
    d = Degradation("lowdose-ct", (1e4,), window=window, pixel_mm=mm, ct_views=180)
    y, _ = d(x, gen())
    assert y.shape == x.shape
    hu = lambda t: window[0] + t * (window[1] - window[0])
    centre = (slice(None), slice(None), slice(40, 88), slice(40, 72))
    assert abs(hu(y)[centre].mean() - hu(x)[centre].mean()) < 20  # HU kept on average
    assert 5 < (hu(y) - hu(x))[centre].std() < 300  # visible quantum noise
    y5, _ = Degradation("lowdose-ct", (1e5,), window=window, pixel_mm=mm, ct_views=180)(x, gen())
    assert (hu(y5) - hu(x))[centre].std() < (hu(y) - hu(x))[centre].std()


def test_sparse_view_ct_streaks(ct_slice):
    x, window, mm = ct_slice
    e = {v: (Degradation("sparse-view-ct", (v,), window=window)(x)[0] - x).abs().mean() for v in (30, 120)}
    assert e[30] > e[120] > 0


def test_levels_drawn_per_image_from_a_range():
    g = gen()
    lv = Degradation("gaussian", (0.02, 0.2)).sample_levels(1000, g)
    assert 0.02 <= lv.min() and lv.max() <= 0.2 and 0.1 < lv.mean() < 0.12
    photons = Degradation("lowdose-ct", (1e3, 1e5)).sample_levels(1000, g)
    assert (photons.log10().mean() - 4).abs() < 0.1  # log-uniform
    factors = Degradation("downsample", (2, 4)).sample_levels(300, g)
    assert set(factors.tolist()) == {2.0, 3.0, 4.0}


@pytest.mark.parametrize("kind,level", [("blur", (1,)), ("gaussian", (-0.1,)), ("gaussian", (0.1, 0.2, 0.3)),
                                        ("downsample", (5,))])
def test_bad_settings_are_refused(kind, level):
    with pytest.raises(ConfigError):
        Degradation(kind, level)


def test_every_kind_runs(mr):
    for kind in KINDS:
        level = {"downsample": (2,), "lowdose-ct": (1e5,), "sparse-view-ct": (60,)}.get(kind, (0.05,))
        x = mr[:1, :, :32, :32]
        y, _ = Degradation(kind, level, window=(-1024.0, 3071.0) if "ct" in kind else (0.0, 1.0), ct_views=60)(x, gen())
        assert y.shape == x.shape and torch.isfinite(y).all()
