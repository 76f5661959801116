"""Pretrained weights into medcnn's networks: an ImageNet-format ResNet-18 state dict (torchvision's
key layout and shapes, built here: no download), 2D -> 3D inflation, refusals, a run folder as source."""
import json

import pytest
import torch

from medcnn.errors import InputError
from medcnn.models import create_model
from medcnn.transfer.weights import adapt_input_channels, inflate, load_pretrained


def imagenet_resnet18_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """torchvision.models.resnet18().state_dict(): names and shapes, random values."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def conv(name, o, i, k):
        sd[f"{name}.weight"] = torch.randn(o, i, k, k, generator=g)

    def bn(name, c):
        sd.update({f"{name}.weight": torch.rand(c, generator=g), f"{name}.bias": torch.randn(c, generator=g),
                   f"{name}.running_mean": torch.randn(c, generator=g), f"{name}.running_var": torch.rand(c, generator=g),
                   f"{name}.num_batches_tracked": torch.tensor(100)})

    conv("conv1", 64, 3, 7), bn("bn1", 64)
    cin = 64
    for li, c in enumerate((64, 128, 256, 512), start=1):
        for b in range(2):
            p = f"layer{li}.{b}"
            conv(f"{p}.conv1", c, cin if b == 0 else c, 3), bn(f"{p}.bn1", c)
            conv(f"{p}.conv2", c, c, 3), bn(f"{p}.bn2", c)
            if b == 0 and li > 1:
                conv(f"{p}.downsample.0", c, cin, 1), bn(f"{p}.downsample.1", c)
        cin = c
    sd["fc.weight"], sd["fc.bias"] = torch.randn(1000, 512, generator=g), torch.randn(1000, generator=g)
    assert len(sd) == 122  # as torchvision's
    return sd


@pytest.fixture(scope="module")
def imagenet_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "resnet18_imagenet.pth"
    torch.save({f"module.{k}": v for k, v in imagenet_resnet18_state_dict().items()}, path)  # DataParallel-saved
    return path


def test_imagenet_resnet18_lands_in_a_grayscale_classifier(imagenet_file):
    net = create_model("resnet18", 2, 1, 3, mean=[0.5], std=[0.5], stem_kernel=7, stem_stride=2, max_pool=True)
    rep = load_pretrained(net, imagenet_file, out_channels=3)
    src = imagenet_resnet18_state_dict()
    assert rep.target_prefix == "1." and rep.source_prefix == "module."
    assert len(rep.loaded) == 122 - 3  # all but conv1 (adapted) and the 1000-class head
    bias_free = {f"layer{i}.0.downsample.0.bias" for i in (2, 3, 4)}  # MONAI's 1x1 shortcut has a bias
    assert set(rep.adapted) == {"conv1.weight"} | bias_free and "input channels 3->1" in rep.adapted["conv1.weight"]
    assert all(float(net.state_dict()["1." + k].abs().sum()) == 0 for k in bias_free)
    assert {"fc.weight", "fc.bias", "0.mean", "0.std"} == set(rep.new) and "1000 outputs" in rep.new["fc.weight"]
    sd = net.state_dict()
    assert torch.equal(sd["1.layer3.1.conv2.weight"], src["layer3.1.conv2.weight"])
    assert torch.equal(sd["1.layer2.0.downsample.1.running_var"], src["layer2.0.downsample.1.running_var"])
    # a gray image (R = G = B) gives the RGB network's first response
    assert torch.allclose(sd["1.conv1.weight"], src["conv1.weight"].sum(1, keepdim=True))
    assert "input normalisation" in rep.new["0.mean"] and "adapted conv1.weight" in rep.summary()


def test_input_channels_repeat_and_rescale():
    w = torch.randn(8, 3, 3, 3)
    w5 = adapt_input_channels(w, 5)
    assert w5.shape == (8, 5, 3, 3) and torch.allclose(w5[:, 3], w[:, 0] * 3 / 5)
    x = torch.rand(1, 1, 9, 9).expand(1, 6, 9, 9)  # same image in every channel: same response as RGB
    ref = torch.nn.functional.conv2d(x[:, :3], w)
    assert torch.allclose(torch.nn.functional.conv2d(x, adapt_input_channels(w, 6)), ref, atol=1e-5)


def test_inflated_kernel_responds_to_a_slice_stack_as_the_2d_kernel_to_the_slice():
    w = torch.randn(4, 2, 3, 3)
    w3 = inflate(w, torch.Size([4, 2, 3, 3, 5]))
    assert w3.shape == (4, 2, 3, 3, 5)
    img = torch.rand(1, 2, 12, 12)
    vol = img[..., None].expand(1, 2, 12, 12, 9)  # the same slice along the last axis
    out3 = torch.nn.functional.conv3d(vol, w3)[..., 0]
    assert torch.allclose(out3, torch.nn.functional.conv2d(img, w), atol=1e-5)
    assert inflate(w, torch.Size([4, 2, 5, 5, 5])) is None


def test_imagenet_weights_inflate_into_a_3d_resnet(imagenet_file):
    net = create_model("resnet18", 3, 1, 2, stem_kernel=7, stem_stride=2)
    rep = load_pretrained(net, imagenet_file, out_channels=2)
    assert "inflated 2D->3D" in rep.adapted["layer1.0.conv1.weight"]
    assert "input channels 3->1" in rep.adapted["conv1.weight"] and "inflated" in rep.adapted["conv1.weight"]
    assert len(rep.adapted) == 20 + 3  # every conv kernel (17 + 3 downsample 1x1 convs) + 3 zero biases
    with pytest.raises(InputError, match="another architecture"):
        load_pretrained(create_model("resnet18", 3, 1, 2, stem_kernel=7), imagenet_file, allow_inflate=False)


def test_tensors_that_do_not_fit_are_listed_unless_a_partial_load_is_asked(imagenet_file):
    net = create_model("resnet18", 2, 1, 2, stem_kernel=3)  # medcnn's 28-px stem: 3x3, not ImageNet's 7x7
    before = net.state_dict()["conv1.weight"].clone()
    with pytest.raises(InputError, match=r"1 tensors .*: conv1\.weight \(shape \(64, 3, 7, 7\) .*transfer.partial"):
        load_pretrained(net, imagenet_file, out_channels=2)
    assert torch.equal(net.state_dict()["conv1.weight"], before)  # nothing was loaded
    rep = load_pretrained(net, imagenet_file, out_channels=2, partial=True)
    assert "conv1.weight" in rep.new and len(rep.loaded) == 119


def test_wrong_architecture_and_pickled_payload_are_refused(imagenet_file, tmp_path):
    unet = create_model("unet", 2, 1, 2)
    with pytest.raises(InputError, match="another architecture"):
        load_pretrained(unet, imagenet_file)

    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "x": Payload()}, bad)
    with pytest.raises(InputError, match="refused"):
        load_pretrained(unet, bad)
    with pytest.raises(InputError, match="not a weights file"):
        load_pretrained(unet, tmp_path / "missing.pth")


def test_linear_probe_from_a_run_folder_trains_only_the_new_head(breast_run, medmnist_dir, tmp_path):
    """BreastMNIST (1 channel, 2 classes) seeds BloodMNIST (RGB, 8 classes): the stem is adapted,
    the head is new; a linear probe changes the head only, batch-norm statistics included."""
    from medcnn.cli.main import main
    from medcnn.infer.loading import load_network
    from medcnn.tasks import get_task

    def load_run(run):
        return load_network(run, "best", get_task("classify").build_network)[:3]

    blood = medmnist_dir / "bloodmnist.npz"
    if not blood.is_file():
        pytest.skip("bloodmnist.npz absent")
    run = tmp_path / "probe"
    assert main(["train", str(blood), "--out", str(run), "--epochs", "1", "--pretrained", str(breast_run),
                 "--finetune", "linear-probe", "--set", "ensemble=1", "--set", "tta=none", "--no-progress"]) == 0
    info = json.loads((run / "run.json").read_text())["pretrained"]
    assert info["strategy"] == "linear-probe" and "input channels 1->3" in info["adapted"]["1.conv1.weight"]
    assert "1.fc.weight" in info["new"] and "kept" in info["new"]["0.mean"]
    _, _, src = load_run(breast_run)
    _, _, got = load_run(run)
    a, b = src.state_dict(), got.state_dict()
    assert torch.equal(a["1.layer2.0.conv1.weight"], b["1.layer2.0.conv1.weight"])
    assert torch.equal(a["1.layer4.1.bn2.running_mean"], b["1.layer4.1.bn2.running_mean"])  # BN kept
    assert torch.allclose(b["1.conv1.weight"], a["1.conv1.weight"].repeat(1, 3, 1, 1) / 3)
    assert b["1.fc.weight"].shape[0] == 8 and float(b["1.fc.weight"].abs().sum()) > 0


def test_cli_refuses_a_missing_source_before_making_a_run_folder(breast_npz, tmp_path, capsys):
    from medcnn.cli.main import main

    run = tmp_path / "run"
    assert main(["train", str(breast_npz), "--out", str(run), "--pretrained", str(tmp_path / "nope.pth")]) == 2
    assert "not a weights file" in capsys.readouterr().err and not run.exists()
