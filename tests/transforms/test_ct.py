"""CT projection physics on a real CT slice (pydicom-data's 693 CT, reduced to 128 x 128)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydicom.data import get_testdata_file

from medcnn.io import read_image
from medcnn.transforms import ct


@pytest.fixture(scope="module")
def slice_hu():
    img = read_image(get_testdata_file("693_UNCR.dcm"))
    assert img.meta["modality"] == "CT"
    hu = torch.from_numpy(img.array[None]).float()  # (1, 1, 512, 512), HU
    return F.avg_pool2d(hu, 4), float(img.spacing[0]) * 4  # 128 x 128, pixel size in mm


def test_projection_matches_scikit_image(slice_hu):
    from skimage.transform import radon

    hu, _ = slice_hu
    views = 90
    ours = ct.radon(hu, views)[0].numpy()  # (views, detector)
    ref = radon(hu[0, 0].numpy(), np.rad2deg(ct.angles(views).numpy()), circle=False).T
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 1e-4 * np.abs(ref).max()  # the same transform, to float precision


def test_fbp_matches_scikit_image_and_inverts_the_projection(slice_hu):
    from skimage.transform import iradon

    hu, _ = slice_hu
    views = 180
    sino = ct.radon(hu, views)
    ours = ct.fbp(sino, 128)[0, 0].numpy()
    ref = iradon(sino[0].numpy().T, np.rad2deg(ct.angles(views).numpy()), circle=False, output_size=128)
    diff = np.abs(ours - ref)
    assert diff.mean() < 0.1 and np.percentile(diff, 99) < 1.0  # HU (edge pixels interpolate differently)
    inside = hu[0, 0].numpy() > -900  # the patient, not the air around it
    err = np.abs(ours - hu[0, 0].numpy())[inside]
    assert np.median(err) < 30  # HU: FBP of 180 views of a 128-px slice is close to the slice


def test_lowdose_noise_follows_the_photon_count(slice_hu):
    hu, mm = slice_hu
    g = torch.Generator().manual_seed(0)
    clean_fbp = ct.fbp(ct.radon(ct.hu_to_mu(hu).clamp_min(0), 180) * mm, 128) / mm
    noise = {}
    for photons in (1e4, 1e5):
        low = ct.lowdose(hu, photons, mm, 180, generator=g)
        noise[photons] = (low - ct.mu_to_hu(clean_fbp))[0, 0, 40:88, 40:88].std().item()
    # quantum noise: the HU noise scales as 1 / sqrt(photons)
    assert noise[1e4] / noise[1e5] == pytest.approx(np.sqrt(10), rel=0.25)
    assert noise[1e5] > 1.0
    low = ct.lowdose(hu, 1e4, mm, 180, generator=torch.Generator().manual_seed(1))
    centre = (slice(None), slice(None), slice(40, 88), slice(40, 88))
    assert abs(low[centre].mean() - hu[centre].mean()) < 15  # no HU shift on average


def test_fewer_views_more_streaks(slice_hu):
    hu, _ = slice_hu
    err = {v: (ct.sparse_view(hu, v) - hu).abs().mean().item() for v in (30, 90, 360)}
    assert err[30] > err[90] > err[360]


def test_non_square_input_is_refused():
    with pytest.raises(ValueError, match=r"\(B, 1, N, N\)"):
        ct.radon(torch.zeros(1, 1, 8, 10), 4)


def test_lowdose_basis_draws_match_the_poisson_simulation(slice_hu):
    """The cheap training draws (FBP is linear; post-log noise is Gaussian) have the exact
    simulation's mean and noise level, and fresh draws differ from each other."""
    hu, mm = slice_hu
    centre = (slice(None), slice(None), slice(40, 88), slice(40, 88))
    clean, noise = ct.lowdose_basis(hu, mm, 180, k=4, generator=torch.Generator().manual_seed(0))
    for photons in (1e4, 1e5):
        exact = torch.cat([ct.lowdose(hu, photons, mm, 180, generator=torch.Generator().manual_seed(s))
                           for s in range(4)])
        fast = torch.cat([ct.lowdose_from_basis(clean, noise, photons, torch.Generator().manual_seed(s))
                          for s in range(4)])
        exact_sd = (exact - clean)[centre].std().item()
        fast_sd = (fast - clean)[centre].std().item()
        assert fast_sd == pytest.approx(exact_sd, rel=0.15), (photons, fast_sd, exact_sd)
        assert abs(fast[centre].mean() - exact[centre].mean()) < 5  # HU
    a, b = (ct.lowdose_from_basis(clean, noise, 1e5, torch.Generator().manual_seed(s)) for s in (1, 2))
    assert (a - b)[centre].std() > 0.5 * exact_sd
