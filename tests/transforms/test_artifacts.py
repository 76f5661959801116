"""Medical-specific augmentations on real images: a TCIA MR slice (2D) and an MSD hippocampus MRI (3D)."""
import numpy as np
import pytest
import torch

from medcnn.plan import AugmentConfig
from medcnn.transforms import artifacts as A


@pytest.fixture(scope="module")
def mr_slice(dicom_series_dir):
    from medcnn.io import read_image

    a = np.asarray(read_image(sorted(dicom_series_dir.glob("*.dcm"))[12]).array, np.float32)
    a = a / np.percentile(a, 99.5)
    return torch.from_numpy(a).reshape(1, 1, *a.shape[-2:]).repeat(4, 1, 1, 1)


@pytest.fixture(scope="module")
def mr_volume(hippocampus_dir):
    from medcnn.io import read_image

    a = np.asarray(read_image(sorted((hippocampus_dir / "imagesTr").glob("*.nii.gz"))[0]).array, np.float32)
    return torch.from_numpy(a / a.max())[None].repeat(2, 1, 1, 1, 1)


def _hf_energy(x):
    """Energy of the finite differences along every spatial axis (edges, noise)."""
    return sum(float(torch.diff(x, dim=d).pow(2).mean()) for d in range(2, x.ndim))


@pytest.mark.parametrize("name", A.ARTIFACTS)
@pytest.mark.parametrize("dims", [2, 3])
def test_each_artifact_changes_only_when_asked(name, dims, mr_slice, mr_volume):
    x = mr_slice if dims == 2 else mr_volume
    fn = {"blur": A.gaussian_blur, "noise": A.gaussian_noise, "gamma": A.random_gamma, "bias_field": A.bias_field,
          "ghosting": A.ghosting, "motion": A.motion, "window_jitter": A.window_jitter}[name]
    strength = {"blur": 2.0, "noise": 0.1, "gamma": 0.4, "bias_field": 0.5, "ghosting": 0.8, "motion": 0.1,
                "window_jitter": 0.2}[name]
    torch.manual_seed(1)
    assert torch.equal(fn(x.clone(), strength, 0.0), x)
    y = fn(x.clone(), strength, 1.0)
    assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()
    assert float((y - x).abs().mean()) > 1e-3


def test_blur_removes_and_noise_adds_fine_detail(mr_slice):
    torch.manual_seed(0)
    assert _hf_energy(A.gaussian_blur(mr_slice, 2.0, 1.0)) < 0.7 * _hf_energy(mr_slice)
    assert _hf_energy(A.gaussian_noise(mr_slice, 0.1, 1.0)) > 1.2 * _hf_energy(mr_slice)  # std drawn in [0, 0.1]


def test_bias_field_is_smooth_positive_and_multiplicative(mr_volume):
    torch.manual_seed(0)
    y = A.bias_field(mr_volume, 0.5, 1.0)
    torch.manual_seed(0)
    field = A.bias_field(torch.ones_like(mr_volume), 0.5, 1.0)  # the same draw on a constant image
    assert torch.allclose(y, mr_volume * field, atol=1e-5)  # multiplicative
    log = field.log()
    assert float(field.min()) > 0 and float(log.amax() - log.amin()) > 0.2  # positive, not a constant gain
    for d in (2, 3, 4):  # smooth: neighbouring gains differ by a small part of the range
        assert float(torch.diff(log, dim=d).abs().max()) < 0.15 * float(log.amax() - log.amin())


def test_ghosting_moves_signal_into_the_background_and_keeps_the_mean(mr_slice):
    torch.manual_seed(0)
    y = A.ghosting(mr_slice, 0.9, 1.0)
    bg = mr_slice < 0.02  # air around the head
    assert float(y[bg].abs().mean()) > 2 * float(mr_slice[bg].abs().mean())
    assert float(y.mean()) == pytest.approx(float(mr_slice.mean()), rel=0.02)  # the k-space centre is untouched


def test_motion_keeps_the_low_frequencies(mr_slice):
    torch.manual_seed(0)
    y = A.motion(mr_slice, 0.1, 1.0)
    assert float(y.mean()) == pytest.approx(float(mr_slice.mean()), rel=0.02)
    assert float((y - mr_slice).abs().mean()) > 0.005


def test_elastic_grid_is_identity_at_zero_and_smooth(mr_slice):
    g0 = A.elastic_grid(1, mr_slice.shape[2:], 0.0)
    out = torch.nn.functional.grid_sample(mr_slice[:1], g0, align_corners=True)
    assert torch.allclose(out, mr_slice[:1], atol=1e-5)
    g = A.elastic_grid(3, mr_slice.shape[2:], 0.1)
    step = 2 / (mr_slice.shape[-1] - 1)
    assert float(torch.diff(g[..., 0], dim=2).sub(step).abs().max()) < step  # no folding between neighbours


def test_plan_fields_switch_them_on(mr_slice):
    cfg = AugmentConfig(preset="custom", p=1.0, bias_field=0.3, ghosting=0.5, blur=1.0)
    torch.manual_seed(0)
    y = A.apply_artifacts(mr_slice.clone(), cfg)
    assert float((y - mr_slice).abs().mean()) > 1e-3
    assert torch.equal(A.apply_artifacts(mr_slice.clone(), AugmentConfig(preset="custom", p=1.0)), mr_slice)
