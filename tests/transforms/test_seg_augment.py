"""Image and label map get the same spatial transform (real DRIVE vessels and MSD hippocampus)."""
import numpy as np
import pytest
import torch

from medcnn.data.segmentation import load_segmentation, read_case
from medcnn.plan import AugmentConfig
from medcnn.transforms.seg_augment import SegAugment


@pytest.mark.parametrize("elastic", [0.0, 0.08])
@pytest.mark.parametrize("which", ["drive", "hippocampus"])
def test_label_follows_the_image(which, elastic, drive_dir, hippocampus_dir):
    ds = load_segmentation(drive_dir if which == "drive" else hippocampus_dir)
    _, label, _ = read_case(ds.cases[0], ds.labels)
    y = torch.as_tensor(label.array[None].astype(np.int64)).repeat(4, 1, *([1] * label.spatial_dims))
    x = (y > 0).float()  # the label itself as the "image": after the transform both must agree
    torch.manual_seed(0)
    cfg = AugmentConfig(preset="custom", p=1.0, flip=True, rotate_deg=30.0, translate=0.0, scale=[0.8, 1.2],
                        brightness=0.0, contrast=0.0, elastic=elastic)
    xa, ya, _ = SegAugment(cfg, label.spatial_dims)(x.clone(), y.clone())
    assert ya.dtype == y.dtype and set(torch.unique(ya).tolist()) <= set(torch.unique(y).tolist())
    assert not torch.equal(ya, y)  # something happened
    agree = ((xa > 0.5) == (ya > 0)).float().mean()
    assert agree > 0.97  # linear vs nearest sampling differ only on edges


def test_patches_oversample_foreground(hippocampus_dir):
    from medcnn.data.seg_prepare import prepare_case
    from medcnn.planning.segment import default_plan
    from medcnn.train.patches import PatchBatches

    ds = load_segmentation(hippocampus_dir)
    plan = default_plan(ds, str(hippocampus_dir))
    cases = [prepare_case(c.id, *read_case(c, ds.labels), plan) for c in ds.cases[:6]]
    batches = PatchBatches(cases, [16, 16, 16], batch_size=6, n_batches=10, fg_oversample=0.5, seed=0)
    x, y, fov = next(iter(batches))
    assert x.shape == (6, 1, 16, 16, 16) and y.shape == (6, 1, 16, 16, 16) and fov.numel() == 0
    forced = [b for b in range(3, 6)]
    assert all(y[b].any() for b in forced)  # the last half of each batch is centred on foreground
    again = next(iter(PatchBatches(cases, [16, 16, 16], 6, 10, 0.5, seed=0)))
    assert torch.equal(again[0], x)  # seeded
    big = PatchBatches(cases, [48, 64, 48], batch_size=2, n_batches=1, fg_oversample=0.0, seed=0)
    xb, yb, _ = next(iter(big))
    assert xb.shape == (2, 1, 48, 64, 48)  # cases smaller than the patch are zero-padded


@pytest.mark.parametrize("dims, only", [(2, None), (3, None), (3, [0])])
def test_mirroring_reaches_every_spatial_axis_and_never_the_channels(dims, only):
    torch.manual_seed(1)
    x = torch.arange(64 * 3 * 6 ** dims, dtype=torch.float32).reshape(64, 3, *([6] * dims))
    y = (x[:, :1] > x.mean()).long()
    cfg = AugmentConfig(preset="custom", p=0.0001, flip=True, rotate_deg=0.0, translate=0.0, scale=[1.0, 1.0],
                        brightness=0.0, contrast=0.0)
    aug = SegAugment(cfg, dims, only)
    aug.cfg.p = 1e-9  # mirroring only (it does not depend on p); no other transform
    xa, _, _ = aug(x.clone(), y.clone(), None)
    seen = set()
    for b in range(64):
        for axes in [a for r in range(dims + 1) for a in __import__("itertools").combinations(range(2, 2 + dims), r)]:
            ref = x[b:b + 1].flip(axes) if axes else x[b:b + 1]
            if torch.allclose(xa[b:b + 1], ref, atol=1e-3):
                seen.add(axes)
    wanted = {(2 + a,) for a in (range(dims) if only is None else only)}
    assert wanted <= seen  # each allowed axis mirrored alone in some sample
    assert set().union(*seen) == set().union(*wanted)  # and no other axis, never batch or channels
