"""Optimisers: ``factory(params, lr, weight_decay, momentum) -> torch.optim.Optimizer``."""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from ..registry import Registry

OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry("optimizer")


@OPTIMIZERS.register("adam")
def adam(params: Iterable, lr: float, weight_decay: float, momentum: float) -> torch.optim.Optimizer:
    """Adam (thesis: lr 2e-4); ``momentum`` is unused (Adam's betas stay at their defaults)."""
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register("sgd")
def sgd(params: Iterable, lr: float, weight_decay: float, momentum: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, momentum=momentum)


@OPTIMIZERS.register("rmsprop")
def rmsprop(params: Iterable, lr: float, weight_decay: float, momentum: float) -> torch.optim.Optimizer:
    """RMSprop (report 001's sweep), with the configured momentum."""
    return torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay, momentum=momentum)
