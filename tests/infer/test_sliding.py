"""Sliding-window inference with mirrored views, on a real Hippocampus volume."""
import itertools

import pytest
import torch

from medcnn.data.segmentation import load_segmentation, read_case
from medcnn.infer import sliding
from medcnn.infer.sliding import mirror_axes, sliding_logits


def test_mirror_axes_cover_every_spatial_axis():
    assert len(mirror_axes(3)) == 8 and len(mirror_axes(2)) == 4
    assert set().union(*mirror_axes(3)) == {2, 3, 4}  # never the batch or channel axis
    assert mirror_axes(3, [0]) == [(), (2,)] and mirror_axes(3, []) == [()]  # only the axes asked for
    assert mirror_axes(3, [2, 0]) == [(), (2,), (4,), (2, 4)]


@pytest.mark.parametrize("view_bytes", [sliding.VIEW_BYTES, 1])  # views batched together / one at a time
def test_batched_views_equal_the_mean_of_single_views(hippocampus_dir, monkeypatch, view_bytes):
    from monai.networks.nets import UNet

    monkeypatch.setattr(sliding, "VIEW_BYTES", view_bytes)
    data = load_segmentation(hippocampus_dir)
    image, _, _ = read_case(data.cases[0], data.labels)
    x = torch.as_tensor(image.array, dtype=torch.float32)
    x = (x - x.mean()) / x.std()
    torch.manual_seed(0)
    net = UNet(3, 1, 3, channels=(4, 8, 16), strides=(2, 2), num_res_units=0).eval()
    patch = [32, 32, 32]  # smaller than the volume: several windows
    got = sliding_logits(net, x, patch, overlap=0.25, batch_size=3, flips=True, num_classes=3)
    views = []
    for r in range(4):
        for axes in itertools.combinations((1, 2, 3), r):
            y = sliding_logits(net, x.flip(axes) if axes else x, patch, overlap=0.25, batch_size=3)
            views.append(y.flip(axes) if axes else y)
    assert got.shape == (3, *x.shape[1:])
    assert torch.allclose(got, torch.stack(views).mean(0), atol=1e-4)
