"""Grad-CAM / occlusion on a real BreastMNIST model, with Adebayo et al.'s model-randomisation check."""
import copy

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from scipy.stats import spearmanr

from medcnn.cli.main import main
from medcnn.infer.explain import base_network, saliency, target_layer
from medcnn.tasks import load_model


@pytest.fixture(scope="module")
def test_images(breast_npz):
    x = np.load(breast_npz)["test_images"][:16]
    return torch.from_numpy(x[:, None]).float() / 255


def _randomised(net):
    r = copy.deepcopy(net)
    torch.manual_seed(123)
    for m in r.modules():
        if hasattr(m, "reset_parameters") and m is not r:
            m.reset_parameters()
    return r


@pytest.mark.parametrize("method", ["gradcam", "occlusion"])
def test_maps_change_when_the_weights_are_randomised(breast_run, test_images, method):
    net = base_network(load_model(breast_run))
    assert target_layer(net) == "1.layer4"
    images = test_images if method == "gradcam" else test_images[:6]
    maps = saliency(net, images, method)
    assert maps.shape == (len(images), 28, 28) and maps.min() >= 0 and maps.max() <= 1
    assert np.allclose(saliency(net, images, method), maps)  # deterministic
    rand = saliency(_randomised(net), images, method)
    rho = [spearmanr(a.ravel(), b.ravel())[0] for a, b in zip(maps, rand)]
    rho = np.nan_to_num(rho)  # a constant map has no rank correlation
    assert float(np.mean(np.abs(rho))) < 0.5, rho


def test_explain_cli_writes_overlays(breast_run, breast_npz, tmp_path, capsys):
    x = np.load(breast_npz)["test_images"][:2]
    files = []
    for i, img in enumerate(x):
        PILImage.fromarray(img).save(tmp_path / f"t{i}.png")
        files.append(str(tmp_path / f"t{i}.png"))
    out = tmp_path / "maps"
    assert main(["explain", str(breast_run), *files, "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["t0_gradcam.png", "t1_gradcam.png"]
    assert "p=" in capsys.readouterr().out
    assert main(["explain", str(breast_run), files[0], "--class", "no-such-class", "--out", str(out)]) == 2


def test_repeated_gradcam_does_not_pile_up_hooks(breast_run, test_images):
    """A server explains image after image with the same network: one set of hooks, same answers."""
    net = base_network(load_model(breast_run))
    layer = dict(net.named_modules())[target_layer(net)]
    first = saliency(net, test_images[:2], "gradcam")
    for _ in range(4):
        again = saliency(net, test_images[:2], "gradcam")
    assert len(layer._forward_hooks) == 1 and len(layer._backward_hooks) == 1
    assert np.allclose(first, again, atol=1e-5)
    assert all(p.grad is None for p in net.parameters())  # no gradients left held between requests
