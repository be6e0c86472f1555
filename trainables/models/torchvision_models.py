"""torchvision architectures, built without weights (pretrained weights load from files in the
``init`` strategy), with the head sized for the data set and the stem for its channels.

torchvision is imported when one of these models is built, not when the registry loads: a trial
that trains ``simple_cnn`` does not pay for it at start-up.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import cache

from torch import nn

from .registry import register_model


def _with_in_channels(model: nn.Module, in_channels: int) -> nn.Module:
    """Replace the first convolution when the input is not RGB."""
    if in_channels == 3:
        return model
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                setattr(parent, name, nn.Conv2d(
                    in_channels, child.out_channels, child.kernel_size, child.stride,
                    child.padding, bias=child.bias is not None))
                return model
    raise ValueError(f"{type(model).__name__} has no convolution to adapt")


@cache
def _staged_resnet() -> type:
    """torchvision's ResNet, able to list its stages like :class:`CifarResNet`."""
    import torchvision.models as tvm

    class StagedResNet(tvm.ResNet):
        def stem(self, x):
            return self.maxpool(self.relu(self.bn1(self.conv1(x))))

        def stages(self) -> list[nn.Module]:
            return [self.layer1, self.layer2, self.layer3, self.layer4]

    return StagedResNet


def _resnet(block: str, layers: list[int]) -> Callable[[int, int], nn.Module]:
    def build(num_classes: int, in_channels: int) -> nn.Module:
        import torchvision.models as tvm

        model = _staged_resnet()(getattr(tvm.resnet, block), layers, num_classes=num_classes)
        return _with_in_channels(model, in_channels)

    return build


def _plain(name: str) -> Callable[[int, int], nn.Module]:
    def build(num_classes: int, in_channels: int) -> nn.Module:
        import torchvision.models as tvm

        return _with_in_channels(getattr(tvm, name)(weights=None, num_classes=num_classes), in_channels)

    return build


def _vgg16(num_classes: int, in_channels: int, batch_norm: bool) -> nn.Module:
    """VGG16, or with ``batch_norm`` torchvision's ``vgg16_bn`` (a BatchNorm after every convolution)."""
    return _plain("vgg16_bn" if batch_norm else "vgg16")(num_classes, in_channels)


register_model("resnet18", norm="imagenet", has_stages=True)(_resnet("BasicBlock", [2, 2, 2, 2]))
register_model("resnet50", norm="imagenet", has_stages=True)(_resnet("Bottleneck", [3, 4, 6, 3]))
register_model("densenet121", norm="imagenet")(_plain("densenet121"))
register_model("squeezenet1_0", norm="imagenet", batch_norm=(False,), linear_head=False)(_plain("squeezenet1_0"))
register_model("vgg16", norm="imagenet", batch_norm=(False, True))(_vgg16)
