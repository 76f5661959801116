"""Training draws of the CT degradations reuse each slice's projection work and match the exact
simulation (a real CT slice from pydicom-data, reduced to 128 x 128)."""
import pytest
import torch
import torch.nn.functional as F
from pydicom.data import get_testdata_file

from medcnn.io import read_image
from medcnn.train.enhance_data import WholeSliceDegrader
from medcnn.transforms.degrade import Degradation

WINDOW = (-1024.0, 1024.0)


@pytest.fixture(scope="module")
def ct_slice():
    img = read_image(get_testdata_file("693_UNCR.dcm"))
    hu = F.avg_pool2d(torch.from_numpy(img.array[None]).float(), 4)[..., :, 8:120]  # 128 x 112: not square
    return (hu - WINDOW[0]) / (WINDOW[1] - WINDOW[0]), float(img.spacing[0]) * 4


def test_lowdose_draws_reuse_the_slice_and_match_the_exact_noise(ct_slice):
    x, mm = ct_slice
    d = Degradation("lowdose-ct", (1e4,), window=WINDOW, pixel_mm=mm, ct_views=180)
    fast = WholeSliceDegrader(d)
    g = torch.Generator().manual_seed(0)
    a, b = fast(7, x, g), fast(7, x, g)
    assert a.shape == x.shape and len(fast.cache) == 1  # the second draw reused the slice's parts
    assert not torch.equal(a, b)  # but is a new noise realisation
    exact = torch.cat([d(x, torch.Generator().manual_seed(s))[0] for s in range(3)])
    centre = (slice(None), slice(None), slice(40, 88), slice(30, 80))
    sd = lambda t: (t - x)[centre].std().item()
    assert sd(torch.cat([a, b, fast(7, x, g)])) == pytest.approx(sd(exact), rel=0.2)


def test_sparse_view_is_computed_once_and_exact(ct_slice):
    x, _ = ct_slice
    d = Degradation("sparse-view-ct", (60,), window=WINDOW)
    fast = WholeSliceDegrader(d)
    g = torch.Generator().manual_seed(0)
    first = fast(3, x, g)
    assert torch.equal(first, fast(3, x, g)) and len(fast.cache) == 1
    assert torch.allclose(first, d(x)[0], atol=1e-6)


def test_patches_prepare_every_slice_before_training(ct_slice):
    from medcnn.train.enhance_data import EnhancePatches

    x, mm = ct_slice
    d = Degradation("lowdose-ct", (5e3, 5e4), window=WINDOW, pixel_mm=mm, ct_views=90)
    patches = EnhancePatches([x[0], x[0].flip(-1)], d, [64, 64], batch_size=4, n_batches=2)
    assert patches.prepare() > 0 and len(patches.whole.cache) == 2
    degraded, clean = next(iter(patches))
    assert degraded.shape == clean.shape == (4, 1, 64, 64) and len(patches.whole.cache) == 2
    assert 0.005 < (degraded - clean).std() < 0.5


@pytest.mark.parametrize("zoom", [2.0, 0.5])
def test_zoomed_patches_show_the_anatomy_at_another_pixel_size(zoom):
    from medcnn.train.enhance_data import EnhancePatches

    mr = read_image(get_testdata_file("MR_small.dcm")).array.astype("float32")  # 64 x 64
    mr = torch.from_numpy(mr / mr.max()).reshape(1, 64, 64)
    ramp = torch.arange(96.0).repeat(96, 1)[None] / 96  # grey rising by 1/96 per column
    d = Degradation("gaussian", (0.1,))
    patches = EnhancePatches([ramp, mr], d, [32, 32], batch_size=8, n_batches=1, weights=[1.0, 0.0],
                             zoom=(zoom, zoom))
    degraded, clean = next(iter(patches))
    assert degraded.shape == clean.shape == (8, 1, 32, 32)
    # away from the border; rotations and mirrors turn the ramp; bicubic steps alternate around their mean
    inner = clean[..., 8:-8, 8:-8]
    step = torch.maximum((inner[..., 1:, :] - inner[..., :-1, :]).abs().mean((1, 2, 3)),
                         (inner[..., 1:] - inner[..., :-1]).abs().mean((1, 2, 3)))
    assert torch.allclose(step, torch.full_like(step, 1 / 96 / zoom), rtol=0.02)
    # the real slice, smaller than a window at zoom 0.5 (64 pixels), is padded, not refused
    small = EnhancePatches([mr], d, [48, 48], batch_size=2, n_batches=1, zoom=(zoom, zoom))
    assert next(iter(small))[1].shape == (2, 1, 48, 48)


def test_zoom_is_refused_for_the_scanner_models():
    from medcnn.errors import ConfigError
    from medcnn.plan import EnhanceConfig, Plan

    plan = Plan(task="enhance")
    EnhanceConfig(zoom=[1.0, 3.0]).check(plan)
    with pytest.raises(ConfigError, match="whole slices"):
        EnhanceConfig(degradation="lowdose-ct", level=[5e4], zoom=[1.0, 2.0]).check(plan)
    with pytest.raises(ConfigError, match="zoom"):
        EnhanceConfig(zoom=[3.0, 1.0]).check(plan)
