"""Learning-rate policies: ``factory(optimizer, epochs, steps_per_epoch, options) -> LRPolicy``.

The loop calls ``after_batch()`` after every optimiser step and ``after_epoch(val_metrics)`` after
every validation; the policy's state travels in the checkpoint. ``options`` is the trial's
:class:`LROptions`. The schedules are ``torch.optim.lr_scheduler`` classes.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from pydantic import Field, field_validator
from torch.optim import lr_scheduler

from ..metric_names import lower_is_better, metric_name
from ..registry import Registry, StrictModel


class LROptions(StrictModel):
    """Knobs of the LR policies (``lr_options`` in a trial config; each policy reads its own);
    onecycle's max_lr is ``lr``."""

    pct_start: float = Field(0.3, gt=0, lt=1)  # onecycle: share of the steps spent warming up
    metric: str = "val/loss"                   # plateau: minimised if a loss, else maximised
    factor: float = Field(0.1, gt=0, lt=1)     # plateau
    patience: int = Field(2, ge=0)             # plateau: epochs without improvement
    warmup_epochs: int = Field(0, ge=0)        # cosine: linear warm-up before the annealing

    _val_metric = field_validator("metric")(lambda v: metric_name(v, ("val",)))  # what after_epoch sees


def check_lr_policy(policy: str, options: LROptions, epochs: int) -> None:
    """Cross-field rule of the policies: cosine's warm-up must end before the last epoch."""
    if policy == "cosine" and options.warmup_epochs >= epochs:
        raise ValueError(f"lr_options.warmup_epochs ({options.warmup_epochs}) must be < epochs ({epochs})")


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
        mode = "min" if lower_is_better(metric) else "max"
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
