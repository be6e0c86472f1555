"""A small CNN for fast CPU trials and tests."""
from __future__ import annotations

from torch import nn

from . import register_model


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


@register_model("simple_cnn", norm="cifar")
def simple_cnn(num_classes: int, in_channels: int) -> nn.Module:
    """Four conv-BN-ReLU blocks (16-32-64-64) with pooling, global average pool, dropout 0.2."""
    return nn.Sequential(
        _block(in_channels, 16), nn.MaxPool2d(2),
        _block(16, 32), nn.MaxPool2d(2),
        _block(32, 64), nn.MaxPool2d(2),
        _block(64, 64),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(64, num_classes),
    )
