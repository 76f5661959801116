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


def _case_and_unet(hippocampus_dir, i: int):
    """Real case ``i`` (z-scored) and a small seeded 3D U-Net with two stride-2 stages."""
    from monai.networks.nets import UNet

    data = load_segmentation(hippocampus_dir)
    image, _, _ = read_case(data.cases[i], data.labels)
    x = torch.as_tensor(image.array, dtype=torch.float32)
    torch.manual_seed(0)
    return (x - x.mean()) / x.std(), UNet(3, 1, 3, channels=(4, 8, 16), strides=(2, 2), num_res_units=0).eval()


def _mean_of_mirrorings(net, x, patch, batch_size):
    """The reference: each of the eight mirrorings of the volume through its own pass, mirrored back."""
    views = []
    for r in range(4):
        for axes in itertools.combinations((1, 2, 3), r):
            y = sliding_logits(net, x.flip(axes) if axes else x, patch, overlap=0.25, batch_size=batch_size)
            views.append(y.flip(axes) if axes else y)
    return torch.stack(views).mean(0)


@pytest.mark.parametrize("view_bytes", [sliding.VIEW_BYTES, 1])  # views batched together / one at a time
def test_batched_views_equal_the_mean_of_single_views(hippocampus_dir, monkeypatch, view_bytes):
    monkeypatch.setattr(sliding, "VIEW_BYTES", view_bytes)
    x, net = _case_and_unet(hippocampus_dir, 0)
    patch = [32, 32, 32]  # smaller than the volume: several windows
    got = sliding_logits(net, x, patch, overlap=0.25, batch_size=3, flips=True, num_classes=3)
    assert got.shape == (3, *x.shape[1:])
    assert torch.allclose(got, _mean_of_mirrorings(net, x, patch, batch_size=3), atol=1e-4)


def test_shifted_views_are_the_mean_of_explicitly_moved_copies(hippocampus_dir):
    """``shift``: each view is the case moved by 0 or ``shift`` voxels along every axis inside zero
    padding; its logits are moved back, so a view-by-view reference can be built by hand."""
    from medcnn.infer.sliding import shift_offsets

    x, net = _case_and_unet(hippocampus_dir, 1)
    patch, s = [32, 32, 32], 3
    got = sliding_logits(net, x, patch, overlap=0.25, batch_size=4, shift=s, flips=[0], num_classes=3)
    views = []
    for o in shift_offsets(3, s):
        moved = torch.nn.functional.pad(x, [v for d in reversed(range(3)) for v in (o[d], s - o[d])])
        y = sliding_logits(net, moved, patch, overlap=0.25, batch_size=4, flips=[0])
        views.append(y[(slice(None), *(slice(o[d], o[d] + x.shape[1 + d]) for d in range(3)))])
    assert len(views) == 8 and got.shape == (3, *x.shape[1:])
    assert torch.allclose(got, torch.stack(views).mean(0), atol=1e-4)
    assert not torch.allclose(views[0], views[-1], atol=1e-3)  # the strided network sees different views


def test_shifted_views_change_nothing_for_a_pointwise_network(hippocampus_dir):
    data = load_segmentation(hippocampus_dir)
    image, _, _ = read_case(data.cases[0], data.labels)
    x = torch.as_tensor(image.array, dtype=torch.float32)
    torch.manual_seed(0)
    net = torch.nn.Conv3d(1, 3, 1).eval()
    plain = sliding_logits(net, x, [24, 24, 24], overlap=0.5)
    assert torch.allclose(sliding_logits(net, x, [24, 24, 24], overlap=0.5, shift=5), plain, atol=1e-4)


def test_large_images_go_one_view_at_a_time_with_the_same_logits():
    """A big 2D image (a fundus photograph is 3 x 2848 x 4288) must not stack its mirrored views in
    memory; the mean over views is the same either way."""
    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 2, 3, padding=1).eval()
    image = torch.rand(3, 96, 80)
    together = sliding.sliding_logits(net, image, [32, 32], flips=True, num_classes=2)
    old = sliding.VIEW_BYTES
    try:
        sliding.VIEW_BYTES = 1  # as for a photograph: every view alone
        alone = sliding.sliding_logits(net, image, [32, 32], flips=True, num_classes=2)
    finally:
        sliding.VIEW_BYTES = old
    assert torch.allclose(together, alone, atol=1e-5)


def test_a_one_slice_window_skips_the_views_that_repeat(hippocampus_dir, monkeypatch):
    """A slice-wise network on a volume (window one voxel deep): mirroring across the slices gives the
    views it already has, so they are left out and the mean over all eight is kept."""
    from monai.networks.nets import UNet

    x, _ = _case_and_unet(hippocampus_dir, 0)
    torch.manual_seed(0)
    net = UNet(3, 1, 3, channels=(4, 8), strides=((2, 2, 1),), kernel_size=(3, 3, 1), up_kernel_size=(3, 3, 1),
               num_res_units=0).eval()
    patch = [32, 32, 1]
    calls = []
    forward = net.forward
    monkeypatch.setattr(net, "forward", lambda t: calls.append(t.shape[0]) or forward(t))
    got = sliding_logits(net, x, patch, overlap=0.25, batch_size=512, flips=True, num_classes=3)
    assert torch.allclose(got, _mean_of_mirrorings(net, x, patch, batch_size=512), atol=1e-5)  # all eight
    windows = sum(calls[:len(calls) - 8])  # the eight reference passes came last
    assert windows == 4 * sum(calls[len(calls) - 8:]) // 8  # ... from four views' windows
    assert sliding.distinct_mirrors([35, 51, 35], patch, True) == [0, 1]
    assert sliding.distinct_mirrors([35, 51, 1], [32, 32, 32], [0, 2]) == [0]  # a one-slice image too
