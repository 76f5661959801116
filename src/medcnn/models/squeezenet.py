"""SqueezeNet 1.1 (Iandola et al. 2016), laid out as torchvision's ``squeezenet1_1`` so its ImageNet
weights load by name (``features.0`` the stem, ``features.3`` ... ``features.12`` the Fire modules).

The head differs from torchvision's: dropout, a 1x1 convolution to the classes, global average
pooling, and no ReLU on the logits (torchvision's clamps them at zero, which a softmax or sigmoid
head should not see). 2D only. A 28x28 input is 1x1 after the third pooling; ``upsample`` enlarges
the input inside the network (as the ResNets' option does) so the last Fire modules see a map.
"""
from __future__ import annotations

import torch
from torch import nn

from medcnn.errors import ConfigError
from medcnn.models.registry import register_model


class Fire(nn.Module):
    """Squeeze (1x1) then expand (1x1 and 3x3 side by side, concatenated), each with a ReLU."""

    def __init__(self, in_channels: int, squeeze: int, expand1x1: int, expand3x3: int):
        super().__init__()
        self.squeeze = nn.Conv2d(in_channels, squeeze, kernel_size=1)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, kernel_size=1)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, kernel_size=3, padding=1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.squeeze(x))
        return torch.cat([self.act(self.expand1x1(x)), self.act(self.expand3x3(x))], 1)


class SqueezeNet11(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.5):
        super().__init__()

        def pool():
            return nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)

        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=3, stride=2), nn.ReLU(inplace=True), pool(),
            Fire(64, 16, 64, 64), Fire(128, 16, 64, 64), pool(),
            Fire(128, 32, 128, 128), Fire(256, 32, 128, 128), pool(),
            Fire(256, 48, 192, 192), Fire(384, 48, 192, 192), Fire(384, 64, 256, 256), Fire(512, 64, 256, 256))
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Conv2d(512, num_classes, kernel_size=1),
                                        nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                if m is self.classifier[1]:
                    nn.init.normal_(m.weight, mean=0.0, std=0.01)
                else:
                    nn.init.kaiming_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model("squeezenet1_1")
def squeezenet1_1(spatial_dims: int, in_channels: int, num_classes: int, *, dropout: float = 0.5,
                  upsample: float = 1):
    """SqueezeNet 1.1 (2D; torchvision's layer names, so ``--pretrained squeezenet1_1.imagenet`` loads)."""
    from medcnn.models.nets import Upsample

    if spatial_dims != 2:
        raise ConfigError(f"squeezenet1_1 is a 2D network; this plan is {spatial_dims}D (use resnet18 or densenet121)")
    net = SqueezeNet11(in_channels, num_classes, dropout)
    return net if upsample == 1 else nn.Sequential(Upsample(upsample, 2), net)


def _block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3 convolutions, each with instance normalisation and a leaky ReLU (nnU-Net's stage)."""
    layers = []
    for c in (in_channels, out_channels):
        layers += [nn.Conv2d(c, out_channels, kernel_size=3, padding=1, bias=False),
                   nn.InstanceNorm2d(out_channels, affine=True), nn.LeakyReLU(0.01, inplace=True)]
    return nn.Sequential(*layers)


class Decoder(nn.ModuleDict):
    """The U-Net half that no classification weights hold: it trains from scratch when the encoder
    starts from ImageNet (``new_on_transfer``)."""

    new_on_transfer = True


class SqueezeUNet(nn.Module):
    """A 2D U-Net whose encoder is SqueezeNet 1.1's ``features`` (torchvision's names, so ImageNet
    weights load into it) and whose decoder joins them back at strides 8, 4, 2 and a full-resolution
    convolution of the input, so structures a few pixels wide (exudates, capillaries) keep their
    edges. Any input of at least 32x32 works: each stage is resized to its skip's size."""

    STAGES = ((0, 2), (2, 5), (5, 8), (8, 13))  # feature slices at strides 2, 4, 8, 16
    WIDTHS = (64, 128, 256, 512)  # their channels

    def __init__(self, in_channels: int, num_classes: int, decoder: tuple[int, ...] = (256, 128, 64, 32)):
        super().__init__()
        self.features = SqueezeNet11(in_channels, 2).features  # the classifier is not used
        d = list(decoder)
        self.decoder = Decoder({
            "input": _block(in_channels, d[3]),
            "up3": _block(self.WIDTHS[3] + self.WIDTHS[2], d[0]),
            "up2": _block(d[0] + self.WIDTHS[1], d[1]),
            "up1": _block(d[1] + self.WIDTHS[0], d[2]),
            "up0": _block(d[2] + d[3], d[3]),
        })
        self.head = nn.Conv2d(d[3], num_classes, kernel_size=1)

    @staticmethod
    def _join(x: torch.Tensor, skip: torch.Tensor, block: nn.Module) -> torch.Tensor:
        x = nn.functional.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return block(torch.cat([x, skip], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips, h = [], x
        for start, stop in self.STAGES:
            for layer in self.features[start:stop]:
                h = layer(h)
            skips.append(h)
        s0, s1, s2, s3 = skips
        h = self._join(s3, s2, self.decoder["up3"])
        h = self._join(h, s1, self.decoder["up2"])
        h = self._join(h, s0, self.decoder["up1"])
        h = self._join(h, self.decoder["input"](x), self.decoder["up0"])
        return self.head(h)


@register_model("squeezenet1_1_unet")
def squeezenet1_1_unet(spatial_dims: int, in_channels: int, num_classes: int, *,
                       decoder: list[int] = (256, 128, 64, 32)):
    """A 2D U-Net on SqueezeNet 1.1's encoder (``--pretrained squeezenet1_1.imagenet`` loads it;
    ``decoder``: the channels of the stages at strides 8, 4, 2 and 1)."""
    if spatial_dims != 2:
        raise ConfigError(f"squeezenet1_1_unet is a 2D network; this plan is {spatial_dims}D (use unet)")
    if len(decoder) != 4:
        raise TypeError(f"decoder needs 4 stage widths, got {list(decoder)}")
    return SqueezeUNet(in_channels, num_classes, tuple(decoder))
