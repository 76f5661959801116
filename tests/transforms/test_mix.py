"""MixUp / CutMix: what each output sample is made of, and the label share it reports."""
import pytest
import torch

from medcnn.transforms.mix import mix_batch


def constant_batch(b: int, spatial: tuple[int, ...]) -> torch.Tensor:
    """Sample i is the constant image i: any output pixel tells which sample it came from."""
    return torch.arange(float(b)).view(b, *(1,) * (len(spatial) + 1)).expand(b, 1, *spatial).contiguous()


@pytest.mark.parametrize("spatial", [(28, 28), (8, 12, 10)])
def test_cutmix_pastes_one_box_whose_area_is_the_label_share(spatial):
    torch.manual_seed(0)
    x = constant_batch(16, spatial)
    out, perm, lam = mix_batch(x, cutmix=1.0)
    assert out.shape == x.shape
    for i in range(16):
        own = (out[i] == i).float().mean()
        partner = (out[i] == perm[i]).float().mean()
        if perm[i] == i:
            assert own == 1
            continue
        assert torch.isclose(own, lam[i]) and torch.isclose(partner, 1 - lam[i])
        pasted = (out[i, 0] == perm[i]).nonzero()
        if len(pasted):  # a single axis-aligned box: its bounding box holds nothing else
            lo, hi = pasted.min(0).values, pasted.max(0).values
            assert len(pasted) == int(torch.prod(hi - lo + 1))
    assert 0.05 < float((1 - lam).mean()) < 0.95  # boxes of many sizes, not all empty or full


def test_mixup_blends_with_the_partner():
    torch.manual_seed(1)
    x = constant_batch(8, (6, 6))
    out, perm, lam = mix_batch(x, mixup=0.4)
    expected = lam * torch.arange(8.0) + (1 - lam) * perm.float()
    assert torch.allclose(out[:, 0, 3, 3], expected, atol=1e-6)
    assert ((lam > 0) & (lam < 1)).all()


def test_both_on_uses_each_kind_and_neither_is_an_error():
    torch.manual_seed(2)
    x = constant_batch(8, (10, 10))
    kinds = set()
    for _ in range(20):
        out, _, _ = mix_batch(x, mixup=1.0, cutmix=1.0)
        kinds.add("mixup" if (out != out.round()).any() else "cutmix")
    assert kinds == {"mixup", "cutmix"}
    with pytest.raises(ValueError):
        mix_batch(x)
