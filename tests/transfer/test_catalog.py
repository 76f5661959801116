"""Named pretrained weights: the data mirror's real ImageNet SqueezeNet 1.1 (MANIFEST §9), torchvision's
names, the torch-cache download (replaced here: no network), offline and corrupt copies, and the plan
that follows the weights."""
import shutil

import pytest
import torch

from conftest import require
from medcnn.errors import ConfigError, InputError
from medcnn.models import create_model
from medcnn.plan import Plan
from medcnn.transfer import catalog
from medcnn.transfer.weights import load_pretrained, resolve_source
from transfer.test_weights import imagenet_resnet18_state_dict

SQUEEZENET = "squeezenet1_1.imagenet"


@pytest.fixture()
def mirror_weights(data_root):
    return require(data_root / "pretrained" / "squeezenet1_1_imagenet_features.pth")


@pytest.fixture()
def no_copies(tmp_path, monkeypatch):
    """An empty data root and an empty torch cache."""
    monkeypatch.setenv("MEDCNN_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("MEDCNN_OFFLINE", raising=False)
    return tmp_path


def _imagenet_net(classes: int = 2, **kw):
    return create_model("squeezenet1_1", 2, 1, classes, mean=list(catalog.IMAGENET_MEAN),
                        std=list(catalog.IMAGENET_STD), **kw)


def test_real_imagenet_squeezenet_fills_every_backbone_tensor(mirror_weights):
    net = _imagenet_net(3)
    rep = load_pretrained(net, SQUEEZENET, out_channels=3)
    assert rep.file == str(mirror_weights)
    assert len(rep.loaded) == 50 and not rep.adapted and not rep.unused  # all of the file, unchanged
    assert set(rep.new) == {"classifier.1.weight", "classifier.1.bias", "0.mean", "0.std"}
    src = torch.load(mirror_weights, weights_only=True)
    assert torch.equal(net.state_dict()["1.features.12.expand3x3.weight"], src["features.12.expand3x3.weight"])
    # a grey image is fed as three equal channels, each normalised with ImageNet's statistics
    net.eval()
    x = torch.rand(2, 1, 28, 28)
    rgb_net = create_model("squeezenet1_1", 2, 3, 3, mean=list(catalog.IMAGENET_MEAN), std=list(catalog.IMAGENET_STD))
    rgb_net.load_state_dict(net.state_dict())
    rgb_net.eval()
    assert torch.allclose(net(x), rgb_net(x.repeat(1, 3, 1, 1)))


def test_torchvision_names_resolve_to_the_same_weights(mirror_weights):
    for name in ("SqueezeNet1_1_Weights.IMAGENET1K_V1", "squeezenet1_1_weights.default", SQUEEZENET):
        assert resolve_source(name) == mirror_weights


def test_without_a_local_copy_torchvision_file_is_downloaded_once_into_torch_cache(mirror_weights, no_copies,
                                                                                     monkeypatch):
    calls = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, hash_prefix))
        sd = torch.load(mirror_weights, weights_only=True)  # torchvision's file also holds its classifier
        sd["classifier.1.weight"], sd["classifier.1.bias"] = torch.zeros(1000, 512, 1, 1), torch.zeros(1000)
        torch.save(sd, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    path = resolve_source("SqueezeNet1_1_Weights.IMAGENET1K_V1")
    assert path == no_copies / "torch" / "hub" / "checkpoints" / "squeezenet1_1-b8a52dc0.pth"
    assert calls == [("https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth", "b8a52dc0")]
    assert resolve_source(SQUEEZENET) == path and len(calls) == 1  # the cache is used next time
    rep = load_pretrained(_imagenet_net(), SQUEEZENET, out_channels=2)
    assert len(rep.loaded) == 50 and "1000 outputs in the source" in rep.new["classifier.1.weight"]


def test_torchvision_resnet18_weights_fill_a_planned_resnet18(no_copies, monkeypatch):
    from medcnn.models import network_from_plan

    monkeypatch.setattr(torch.hub, "download_url_to_file",
                        lambda url, dst, hash_prefix=None, progress=True: torch.save(imagenet_resnet18_state_dict(), dst))
    stem = {"stem_kernel": 7, "stem_stride": 2, "max_pool": True, "widen_factor": 1.0}  # torchvision's ResNet-18
    plan = catalog.plan_for_weights(Plan().override(["model.kwargs.widen_factor=0.5", "model.kwargs.upsample=2",
                                                     "transfer.pretrained=ResNet18_Weights.IMAGENET1K_V1"]))
    assert plan.model.kwargs == {**stem, "upsample": 2}  # the planner's half width cannot hold these weights
    plan = catalog.plan_for_weights(Plan().override(["model.name=resnet34", "transfer.pretrained=resnet18.imagenet"]))
    assert plan.model.name == "resnet18" and plan.model.kwargs == stem
    net = network_from_plan(plan, 2, mean=plan.preprocessing.mean, std=plan.preprocessing.std)
    rep = load_pretrained(net, plan.transfer.pretrained, out_channels=2)
    assert rep.file.endswith("resnet18-f37072fd.pth")
    assert len(rep.loaded) == 120 and set(rep.adapted) == {f"layer{i}.0.downsample.0.bias" for i in (2, 3, 4)}


def test_offline_or_failed_download_is_one_clear_line(no_copies, monkeypatch):
    monkeypatch.setenv("MEDCNN_OFFLINE", "1")
    with pytest.raises(InputError, match=r"no copy at .*pretrained/squeezenet1_1_imagenet_features\.pth or "
                                         r".*squeezenet1_1-b8a52dc0\.pth and downloads are off") as e:
        resolve_source(SQUEEZENET)
    assert "\n" not in str(e.value) and "download.pytorch.org" in str(e.value)
    monkeypatch.delenv("MEDCNN_OFFLINE")

    def unreachable(url, dst, hash_prefix=None, progress=True):
        import urllib.error
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", unreachable)
    with pytest.raises(InputError, match="the download from .* failed .*name resolution.*download it there by hand"):
        resolve_source(SQUEEZENET)


def test_a_corrupt_local_copy_is_refused(mirror_weights, no_copies):
    bad = no_copies / "data" / "pretrained" / "squeezenet1_1_imagenet_features.pth"
    bad.parent.mkdir(parents=True)
    shutil.copyfile(mirror_weights, bad)
    with open(bad, "r+b") as f:
        f.seek(2000)
        f.write(b"\x00" * 16)
    with pytest.raises(InputError, match="md5 is not the expected"):
        resolve_source(SQUEEZENET)


def test_plan_follows_the_named_weights():
    plan = Plan(task="classify", num_classes=2).override(["model.kwargs.widen_factor=0.5", "model.kwargs.stem_stride=1"])
    got = catalog.plan_for_weights(plan.override([f"transfer.pretrained={SQUEEZENET}"]))
    assert got.model.name == "squeezenet1_1" and got.model.kwargs == {}  # the ResNet's options do not apply
    up = catalog.plan_for_weights(plan.override(["model.kwargs.upsample=4", f"transfer.pretrained={SQUEEZENET}"]))
    assert up.model.kwargs == {"upsample": 4}  # an option both networks have stays
    assert got.preprocessing.mean == list(catalog.IMAGENET_MEAN) and got.preprocessing.std == list(catalog.IMAGENET_STD)
    kept = catalog.plan_for_weights(plan.override(["model.name=squeezenet1_1", "model.kwargs.upsample=4",
                                                   "transfer.pretrained=SqueezeNet1_1_Weights.IMAGENET1K_V1"]))
    assert kept.model.kwargs == {"upsample": 4}  # the user's options for that network stay
    assert catalog.plan_for_weights(plan) is plan  # no named weights: unchanged
    with pytest.raises(ConfigError, match="2D network; this plan is 3D"):
        catalog.plan_for_weights(plan.override(["spatial_dims=3", "preprocessing.input_size=[28,28,28]",
                                                 f"transfer.pretrained={SQUEEZENET}"]))
    with pytest.raises(ConfigError, match="expects 3-channel .* this plan has 4 channels"):
        catalog.plan_for_weights(plan.override(["preprocessing.channels=4", f"transfer.pretrained={SQUEEZENET}"]))


def test_cli_trains_from_imagenet_weights_with_their_normalisation(mirror_weights, breast_npz, tmp_path):
    import json

    import yaml

    from medcnn.cli.main import main

    run = tmp_path / "run"
    assert main(["train", str(breast_npz), "--out", str(run), "--pretrained", "SqueezeNet1_1_Weights.IMAGENET1K_V1",
                 "--epochs", "1", "--set", "ensemble=1", "--no-progress"]) == 0
    plan = yaml.safe_load((run / "plan.yaml").read_text())
    assert plan["model"]["name"] == "squeezenet1_1" and plan["preprocessing"]["mean"] == list(catalog.IMAGENET_MEAN)
    info = json.loads((run / "transfer.json").read_text())
    assert info["file"] == str(mirror_weights) and info["loaded"] == 50
    import numpy as np
    from PIL import Image

    png = tmp_path / "t0.png"
    Image.fromarray(np.load(breast_npz)["test_images"][0]).save(png)
    assert main(["predict", str(run), str(png), "--json", str(tmp_path / "p.json")]) == 0
    res = json.loads((tmp_path / "p.json").read_text())["results"][0]
    assert res["domain"]["verdict"] != "foreign" and abs(sum(res["probabilities"].values()) - 1) < 1e-4


def test_models_command_lists_the_named_weights(capsys):
    from medcnn.cli.main import main

    assert main(["models"]) == 0
    text = capsys.readouterr().out
    assert "squeezenet1_1\n" in text and "squeezenet1_1.imagenet" in text and "resnet18.imagenet" in text


def test_a_segmentation_plan_gets_the_unet_on_the_imagenet_encoder(mirror_weights, drive_dir, tmp_path):
    """`--pretrained squeezenet1_1.imagenet` for a segmentation plan: the U-Net on SqueezeNet's
    encoder, every encoder tensor from ImageNet, the decoder new; the plan's normalisation stays."""
    import json

    from medcnn.data.segmentation import load_segmentation
    from medcnn.models import network_from_plan
    from medcnn.planning.segment import default_plan
    from medcnn.tasks import train

    data = load_segmentation(drive_dir)
    planned = default_plan(data, str(drive_dir)).override(
        ["epochs=1", "segment.patches_per_epoch=4", "max_minutes=0", "segment.tta_flips=false",
         "segment.split={test_fraction: 0.1, val_fraction: 0.1, fold: null}", "segment.patch_size=[96, 96]",
         "preprocessing.input_size=[96, 96]", "batch_size=2"])
    plan = catalog.plan_for_weights(planned.override([f"transfer.pretrained={SQUEEZENET}"]))
    assert plan.model.name == "squeezenet1_1_unet" and plan.model.kwargs == {}  # the DynUNet's options go
    assert plan.preprocessing == planned.preprocessing
    rep = load_pretrained(network_from_plan(plan, plan.num_classes), SQUEEZENET, out_channels=plan.num_classes)
    assert len(rep.loaded) == 50 and not rep.unused
    assert {k.split(".")[0] for k in rep.new} == {"decoder", "head"}
    run = train(plan, data, tmp_path / "run", progress=False)
    info = json.loads((run / "run.json").read_text())["pretrained"]
    assert info["loaded"] == 50 and info["strategy"] == "finetune"
    with pytest.raises(ConfigError, match="resnet18.imagenet fits no segmentation network"):
        catalog.plan_for_weights(planned.override(["transfer.pretrained=resnet18.imagenet"]))
