"""Which parameters train (``freeze`` dimension): ``fn(model) -> None`` sets ``requires_grad``.

The optimiser only receives trainable parameters, and :func:`train_mode` keeps every BatchNorm
whose parameters are all frozen in eval mode, so a frozen part keeps its running statistics too.
"""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..models import MODELS, head, staged_models
from ..registry import Registry

FREEZES: Registry[Callable[[nn.Module], None]] = Registry("freeze")


def check_freeze(freeze: str, model: str) -> None:
    """Cross-field rule of the freeze dimension: ``last_block`` needs a model made of stages."""
    if freeze == "last_block" and not MODELS.get(model).has_stages:
        raise ValueError(f"freeze: 'last_block' needs a model made of stages ({', '.join(staged_models())}), "
                         f"not {model!r}")


def _only(model: nn.Module, trainable: list[nn.Module]) -> None:
    model.requires_grad_(False)
    for module in trainable:
        module.requires_grad_(True)


@FREEZES.register("none")
def none(model: nn.Module) -> None:
    """Fine-tune everything."""


@FREEZES.register("backbone")
def backbone(model: nn.Module) -> None:
    """Linear probe (thesis): only the head trains."""
    _only(model, [head(model)])


@FREEZES.register("last_block")
def last_block(model: nn.Module) -> None:
    """Report 002: the last residual block (e.g. ``layer4[2]`` of ResNet50) and the head train; a
    stage that is not made of blocks (``simple_cnn``'s conv-BN-ReLU) is the last block itself."""
    last = model.stages()[-1]
    block = last[-1] if isinstance(last, nn.Sequential) and any(last[-1].children()) else last
    _only(model, [block, head(model)])


def train_mode(model: nn.Module) -> None:
    """``model.train()``, except BatchNorm layers whose parameters are all frozen."""
    model.train()
    for m in model.modules():
        params = list(m.parameters())
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d | nn.BatchNorm3d) and params and not any(
                p.requires_grad for p in params):
            m.eval()
