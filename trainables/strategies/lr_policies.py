"""Learning-rate policies: ``factory(optimizer, epochs, steps_per_epoch) -> LRPolicy``.

The loop calls ``after_batch()`` after every optimiser step and ``after_epoch(val_metrics)`` after
every validation; the policy's state travels in the checkpoint.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from ..registry import Registry


class LRPolicy:
    """Base policy: the learning rate stays where the optimiser put it."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer

    def after_batch(self) -> None:
        pass

    def after_epoch(self, val_metrics: dict[str, float]) -> None:
        pass

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


LR_POLICIES: Registry[Callable[..., LRPolicy]] = Registry("lr_policy")


@LR_POLICIES.register("constant")
def constant(optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int) -> LRPolicy:
    return LRPolicy(optimizer)
