"""Averaged predictions: test-time augmentation by symmetry, and the averaging itself."""
import dataclasses

import numpy as np
import pytest
import torch

from medcnn.data.classification import load_classification
from medcnn.infer.predictor import Predictor
from medcnn.models.ensemble import dense_symmetric_mean, mean_probability_logits, symmetric_views
from medcnn.tasks import load_model


@pytest.mark.parametrize("mode, n", [("none", 1), ("flip", 2), ("dihedral", 8), ("scale", 3)])
def test_views_are_distinct_symmetries(mode, n):
    x = torch.arange(2 * 1 * 5 * 5, dtype=torch.float32).reshape(2, 1, 5, 5)
    views = symmetric_views(x, mode)
    assert len(views) == n and len({v.numpy().tobytes() for v in views}) == n


@pytest.mark.parametrize("spatial", [(28, 28), (20, 24, 22)])
def test_scale_views_zoom_about_the_centre(spatial):
    """A centred square (cube) keeps its centre and grows / shrinks by the zoom factor per axis."""
    x = torch.zeros((1, 1) + spatial)
    x[(0, 0) + tuple(slice(n // 2 - 4, n // 2 + 4) for n in spatial)] = 1.0
    views = symmetric_views(x, "scale")
    assert all(v.shape == x.shape for v in views)
    for v, f in zip(views[1:], (0.9, 1.1)):
        mass = v.sum() / x.sum()
        assert abs(float(mass) - f ** len(spatial)) < 0.08
        centre = [float((v.sum(dim=tuple(d for d in range(2, v.ndim) if d != ax)) * torch.arange(n)).sum() / v.sum())
                  for ax, n in zip(range(2, v.ndim), spatial)]
        assert max(abs(c - (n / 2 - 0.5)) for c, n in zip(centre, spatial)) < 0.6
    flat = torch.full((1, 1) + spatial, 0.3)
    assert all(torch.allclose(v, flat) for v in symmetric_views(flat, "scale"))  # border fill: no dark frame


@pytest.mark.parametrize("mode, n", [("none", 1), ("flip", 2), ("dihedral", 8)])
def test_a_dense_mean_maps_every_view_back(mode, n):
    """A position-aware prediction (it adds a ramp along the last axis) averaged over the views: each
    view's ramp is turned back, so the mean is the input plus the views' ramps in the input's frame."""
    torch.manual_seed(0)
    x = torch.rand(2, 1, 6, 8)  # not square: rotated views change shape and must be turned back
    ramp = lambda v: v + torch.arange(v.shape[-1], dtype=v.dtype)  # noqa: E731
    ramps = [torch.arange(8.0).expand(6, 8), torch.arange(8.0).flip(0).expand(6, 8)]  # seen along x or mirrored
    out = dense_symmetric_mean(ramp, x, mode)
    assert out.shape == x.shape
    if mode == "none":
        assert torch.allclose(out, x + ramps[0])
    elif mode == "flip":
        assert torch.allclose(out, x + (ramps[0] + ramps[1]) / 2)
    else:  # the 8 views: half see the ramp along the rows (rotated by 90 degrees), half along the columns
        cols = (ramps[0] + ramps[1]) / 2  # = 3.5 everywhere
        rows = (torch.arange(6.0)[:, None] + torch.arange(6.0).flip(0)[:, None]).expand(6, 8) / 2  # = 2.5
        assert torch.allclose(out, x + (cols + rows) / 2)
    assert torch.allclose(dense_symmetric_mean(lambda v: v * 2, x, mode), 2 * x)  # an equivariant map is unchanged
    with pytest.raises(ValueError, match="no dense mean"):
        dense_symmetric_mean(ramp, x, "scale")


def test_mean_probability_logits_average_probabilities():
    a, b = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([[-1.0, 3.0, 0.0]])
    p = torch.softmax(mean_probability_logits([a, b], False), 1)
    torch.testing.assert_close(p, (torch.softmax(a, 1) + torch.softmax(b, 1)) / 2)
    q = torch.sigmoid(mean_probability_logits([a, b], True))
    torch.testing.assert_close(q, (torch.sigmoid(a) + torch.sigmoid(b)) / 2)


@pytest.mark.parametrize("mode", ["flip", "dihedral"])
def test_tta_prediction_is_invariant_to_the_symmetry(breast_run, breast_npz, mode):
    base = load_model(breast_run)
    pred = Predictor(dataclasses.replace(base.plan, tta=mode), base.net)
    x = load_classification(str(breast_npz)).split("test")[0][:16]
    p = pred.predict_array(x)
    np.testing.assert_allclose(p, pred.predict_array(np.ascontiguousarray(x[..., ::-1])), atol=2e-5)
    if mode == "dihedral":
        np.testing.assert_allclose(p, pred.predict_array(np.ascontiguousarray(np.rot90(x, 1, (-2, -1)))), atol=2e-5)
    assert not np.allclose(p, base.predict_array(x), atol=1e-4)  # it did change the prediction
