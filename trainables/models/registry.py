"""The model registry: each entry builds a network for ``num_classes`` and ``in_channels`` and says
which normalisation statistics it expects and whether it lists its stage outputs."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..registry import Registry

# Per-channel statistics (thesis: CIFAR for the 32 px ResNet18, ImageNet for 224 px models).
NORMS = {
    "cifar": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


@dataclass(frozen=True)
class ModelEntry:
    build: Callable[[int, int], nn.Module]
    norm: str
    has_stages: bool = False  # can list its stage outputs (``stage_outputs``), which VaB-AL reads


MODELS: Registry[ModelEntry] = Registry("model")


def register_model(name: str, norm: str, has_stages: bool = False):
    """Decorator: register ``fn(num_classes, in_channels) -> nn.Module`` under ``name``."""

    def add(fn: Callable[[int, int], nn.Module]) -> Callable[[int, int], nn.Module]:
        MODELS.register(name)(ModelEntry(fn, norm, has_stages))
        return fn

    return add


def staged_models() -> list[str]:
    """The registered models that list their stage outputs."""
    return [n for n in MODELS if MODELS.get(n).has_stages]


def build_model(name: str, num_classes: int, in_channels: int) -> nn.Module:
    return MODELS.get(name).build(num_classes, in_channels)


def normalisation(name: str, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std as [1, C, 1, 1] tensors; grey input uses the channel average."""
    mean, std = (torch.tensor(v) for v in NORMS[MODELS.get(name).norm])
    if channels == 1:
        mean, std = mean.mean(0, keepdim=True), std.mean(0, keepdim=True)
    return mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)


def stage_outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The outputs of the model's stages (residual blocks groups), for models that list them."""
    if not hasattr(model, "stages"):
        raise ValueError(f"{type(model).__name__} cannot list its stage outputs")
    x = model.stem(x)
    outs = []
    for stage in model.stages():
        x = stage(x)
        outs.append(x)
    return outs
