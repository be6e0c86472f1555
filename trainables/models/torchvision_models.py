"""torchvision architectures, built without weights (pretrained weights load from files in the
``init`` strategy), with the head sized for the data set and the stem for its channels."""
from __future__ import annotations

from collections.abc import Callable

import torchvision.models as tvm
from torch import nn

from . import register_model


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


class _Stages:
    """Lets a torchvision ResNet list its stages like :class:`CifarResNet`."""

    def stem(self, x):
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def stages(self) -> list[nn.Module]:
        return [self.layer1, self.layer2, self.layer3, self.layer4]


class StagedResNet(_Stages, tvm.ResNet):
    pass


def _resnet(block: type, layers: list[int]) -> Callable[[int, int], nn.Module]:
    def build(num_classes: int, in_channels: int) -> nn.Module:
        return _with_in_channels(StagedResNet(block, layers, num_classes=num_classes), in_channels)

    return build


register_model("resnet18", norm="imagenet", has_stages=True)(
    _resnet(tvm.resnet.BasicBlock, [2, 2, 2, 2]))
register_model("resnet50", norm="imagenet", has_stages=True)(
    _resnet(tvm.resnet.Bottleneck, [3, 4, 6, 3]))

for _name in ("densenet121", "squeezenet1_0", "vgg16"):
    register_model(_name, norm="imagenet")(
        lambda num_classes, in_channels, _fn=getattr(tvm, _name):
        _with_in_channels(_fn(weights=None, num_classes=num_classes), in_channels))
