"""A small CNN for fast CPU trials and tests; it lists its stage outputs, so VaB-AL can read it."""
from __future__ import annotations

import torch
from torch import nn

from .registry import register_model


def _block(cin: int, cout: int, batch_norm: bool) -> nn.Sequential:
    if not batch_norm:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True))
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class SimpleCNN(nn.Module):
    """Four conv-BN-ReLU blocks (16-32-64-64; conv-ReLU with a bias without ``batch_norm``) with
    pooling, global average pool, dropout 0.2. The first block is the stem; the other three are the
    stages."""

    def __init__(self, num_classes: int, in_channels: int, batch_norm: bool = True) -> None:
        super().__init__()
        self.stem = nn.Sequential(_block(in_channels, 16, batch_norm), nn.MaxPool2d(2))
        self.layer1 = nn.Sequential(_block(16, 32, batch_norm), nn.MaxPool2d(2))
        self.layer2 = nn.Sequential(_block(32, 64, batch_norm), nn.MaxPool2d(2))
        self.layer3 = _block(64, 64, batch_norm)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
                                  nn.Linear(64, num_classes))

    def stages(self) -> list[nn.Module]:
        return [self.layer1, self.layer2, self.layer3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages():
            x = stage(x)
        return self.head(x)


@register_model("simple_cnn", norm="cifar", has_stages=True, batch_norm=(True, False))
def simple_cnn(num_classes: int, in_channels: int, batch_norm: bool) -> nn.Module:
    return SimpleCNN(num_classes, in_channels, batch_norm)
