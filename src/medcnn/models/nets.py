"""Built-in classification networks, from MONAI, registered by name for 2D and 3D.

ResNets take ``stem_stride`` (1 keeps full resolution as the MedMNIST paper's 28-px ResNet
does; 2 halves it in the first convolution, about 4x faster on CPU), ``stem_kernel`` and
``max_pool``; the defaults follow the input size (see ``medcnn.planning``). Two options give a
small image more resolution inside the network: ``upsample`` (interpolate the input by this factor
before the stem, as the MedMNIST paper's "ResNet (224)" rows do with 28-px images) and
``last_stride`` (1 keeps the last stage at the previous stage's resolution).
"""
from __future__ import annotations

from torch import nn

from medcnn.models.registry import register_model


class Upsample(nn.Module):
    """Interpolate the input by ``factor`` (bilinear / trilinear); part of the exported model."""

    def __init__(self, factor: float, spatial_dims: int):
        super().__init__()
        self.factor, self.mode = float(factor), "bilinear" if spatial_dims == 2 else "trilinear"

    def forward(self, x):
        return nn.functional.interpolate(x, scale_factor=self.factor, mode=self.mode, align_corners=False)


def _set_last_stride(net: nn.Module, stride: int) -> None:
    block = net.layer4[0]
    block.conv1.stride = (stride,) * len(block.conv1.stride)
    if block.downsample is not None:
        conv = block.downsample[0]
        conv.stride = (stride,) * len(conv.stride)


def _resnet(depth: int):
    def build(spatial_dims: int, in_channels: int, num_classes: int, *, stem_stride: int = 1,
              stem_kernel: int = 3, max_pool: bool = False, widen_factor: float = 1.0,
              upsample: float = 1, last_stride: int = 2, **extra):
        from monai.networks import nets

        fn = getattr(nets, f"resnet{depth}")
        net = fn(spatial_dims=spatial_dims, n_input_channels=in_channels, num_classes=num_classes,
                 conv1_t_size=stem_kernel, conv1_t_stride=stem_stride, no_max_pool=not max_pool,
                 widen_factor=widen_factor, **extra)
        if last_stride != 2:
            _set_last_stride(net, last_stride)
        return net if upsample == 1 else nn.Sequential(Upsample(upsample, spatial_dims), net)

    build.__doc__ = f"MONAI ResNet-{depth} (2D/3D)."
    return build


for _d in (10, 18, 34, 50):
    register_model(f"resnet{_d}")(_resnet(_d))


@register_model("densenet121")
def densenet121(spatial_dims: int, in_channels: int, num_classes: int, **extra):
    """MONAI DenseNet-121 (2D/3D)."""
    from monai.networks.nets import DenseNet121

    return DenseNet121(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=num_classes, **extra)


@register_model("efficientnet-b0")
def efficientnet_b0(spatial_dims: int, in_channels: int, num_classes: int, **extra):
    """MONAI EfficientNet-B0 (2D/3D), randomly initialised."""
    from monai.networks.nets import EfficientNetBN

    return EfficientNetBN("efficientnet-b0", pretrained=False, spatial_dims=spatial_dims,
                          in_channels=in_channels, num_classes=num_classes, **extra)


@register_model("unet")
def unet(spatial_dims: int, in_channels: int, num_classes: int, *, filters: list[int] = (16, 32, 64, 128),
         strides: list[int] = (1, 2, 2, 2), kernel_size: int = 3, norm: str = "instance", deep_supervision: int = 0,
         **extra):
    """MONAI DynUNet (nnU-Net's U-Net): one stage per stride, ``filters`` channels per stage.
    ``deep_supervision=k``: k extra outputs from the next-coarser decoder stages, returned (stacked
    on dim 1, upsampled to full size) in training mode only; the task weights their losses."""
    from monai.networks.nets import DynUNet

    if len(filters) != len(strides):
        raise TypeError(f"filters {list(filters)} and strides {list(strides)} need the same length")
    if not 0 <= deep_supervision <= len(strides) - 2:
        raise TypeError(f"deep_supervision must be 0..{len(strides) - 2} for {len(strides)} stages")
    return DynUNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=num_classes,
                   kernel_size=[kernel_size] * len(strides), strides=list(strides),
                   upsample_kernel_size=list(strides[1:]), filters=list(filters), norm_name=norm,
                   deep_supervision=deep_supervision > 0, deep_supr_num=max(deep_supervision, 1), **extra)
