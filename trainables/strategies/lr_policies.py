"""Learning-rate policies: ``factory(optimizer, epochs, steps_per_epoch, options) -> LRPolicy``.

The loop calls ``after_batch()`` after every optimiser step and ``after_epoch(val_metrics)`` after
every validation; the policy's state travels in the checkpoint. ``options`` is the trial's
:class:`~trainables.config.LROptions`. The schedules are ``torch.optim.lr_scheduler`` classes.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch.optim import lr_scheduler

from ..registry import Registry

if TYPE_CHECKING:
    from ..config import LROptions


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


class Scheduled(LRPolicy):
    """A policy driven by a torch scheduler, whose state is the policy's state."""

    def __init__(self, optimizer: torch.optim.Optimizer,
                 scheduler: lr_scheduler.LRScheduler | lr_scheduler.ReduceLROnPlateau) -> None:
        super().__init__(optimizer)
        self.scheduler = scheduler

    def state_dict(self) -> dict:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.scheduler.load_state_dict(state)


class PerBatch(Scheduled):
    """A torch scheduler stepped after every optimiser step."""

    def after_batch(self) -> None:
        self.scheduler.step()


class OnPlateau(Scheduled):
    """``ReduceLROnPlateau`` stepped after every validation with one validation metric."""

    def __init__(self, optimizer: torch.optim.Optimizer, metric: str, factor: float,
                 patience: int) -> None:
        mode = "min" if metric.endswith("/loss") else "max"
        super().__init__(optimizer, lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=mode, factor=factor, patience=patience))
        self.metric = metric

    def after_epoch(self, val_metrics: dict[str, float]) -> None:
        self.scheduler.step(val_metrics[self.metric])


LR_POLICIES: Registry[Callable[..., LRPolicy]] = Registry("lr_policy")


@LR_POLICIES.register("constant")
def constant(optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int,
             options: LROptions) -> LRPolicy:
    return LRPolicy(optimizer)


@LR_POLICIES.register("onecycle")
def onecycle(optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int,
             options: LROptions) -> LRPolicy:
    """``OneCycleLR`` per batch with the trial's ``lr`` as max_lr and ``options.pct_start``
    (torch's defaults otherwise: start at max_lr / 25, cosine annealing, momentum cycled)."""
    max_lr = [g["lr"] for g in optimizer.param_groups]
    return PerBatch(optimizer, lr_scheduler.OneCycleLR(
        optimizer, max_lr=max_lr, total_steps=epochs * steps_per_epoch, pct_start=options.pct_start))


@LR_POLICIES.register("plateau")
def plateau(optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int,
            options: LROptions) -> LRPolicy:
    """``ReduceLROnPlateau`` on ``options.metric`` (minimised for a loss, else maximised) with
    ``options.factor`` and ``options.patience``."""
    return OnPlateau(optimizer, options.metric, options.factor, options.patience)


@LR_POLICIES.register("cosine")
def cosine(optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int,
           options: LROptions) -> LRPolicy:
    """Cosine annealing to 0 per batch after ``options.warmup_epochs`` of linear warm-up."""
    warmup, total = options.warmup_epochs * steps_per_epoch, epochs * steps_per_epoch
    anneal = lr_scheduler.CosineAnnealingLR(optimizer, T_max=total - warmup)
    if not warmup:
        return PerBatch(optimizer, anneal)
    ramp = lr_scheduler.LinearLR(optimizer, start_factor=1 / warmup, total_iters=warmup)
    return PerBatch(optimizer, lr_scheduler.SequentialLR(optimizer, [ramp, anneal], [warmup]))
