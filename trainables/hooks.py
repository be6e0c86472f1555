"""The fixed points where a strategy with cross-cutting needs enters the training loop.

Most strategies are one value in one dimension (a sampler, a loss, ...). A strategy that needs more
(VaB-AL's learned per-sample weights, the in-domain SSL pre-stage, the cascade's two networks) is a
:class:`TrialHook` subclass registered by name in ``HOOKS``, in its own module. The loop
(:func:`trainables.train.run`) calls every hook that is ``active`` for the trial, in name order:

1. ``initial_weights(arrays, device)``: before the network is built; a weights file for ``init``;
2. ``network(class_names, build)``: the trial's network, if the hook makes it;
3. ``setup(state)``: once the trial state (model, optimiser, data on the device) exists;
4. ``epoch_start(state)`` before each training pass, ``batch(state, x, targets)`` on each
   augmented training batch (it may mix it: it returns the batch and the loss's targets, a list of
   (weight, sample indices)), ``trained(state)`` after the pass and before the validation (a post
   hoc change of the model to evaluate: tau-norm), ``epoch_end(state)`` after each validation (it
   returns metrics to report with that epoch);
5. ``state_dict()`` / ``load_state_dict(state, saved)``: the hook's part of the checkpoint, loaded
   after the model's weights and before the optimiser's and LR policy's state (so a hook that
   replaced them, as cRT does, rebuilds them first).

``validate(cfg)`` is called by the trial config for every registered hook, active or not: it checks
(and may complete) the config's cross-field rules that belong to the strategy, raising
``ValueError`` with a message that starts with the field at fault.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from .data.arrays import ImageArrays
from .registry import Registry


class Split(Protocol):
    images: torch.Tensor  # uint8 [N, C, H, W] on the trial's device
    labels: torch.Tensor  # int64 [N] on the trial's device


class LoopState(Protocol):
    """What a hook may read (and, for the two weight fields, write) of the trial's state."""

    cfg: Any  # the trial's validated TrialConfig
    device: torch.device
    class_names: list[str]
    model: nn.Module
    splits: dict[str, Split]
    epoch: int  # epochs finished
    sampler_weights: torch.Tensor | None  # float32 [N_train] on the CPU, read by the sampler
    loss_weights: torch.Tensor | None  # float32 [N_train] on the CPU, multiplied into the loss
    # what a two-stage strategy (cRT) replaces for its second stage
    sampler: str  # the sampler (a ``SAMPLERS`` name) of the next epochs
    optimizer: torch.optim.Optimizer
    policy: Any  # the LR policy (:class:`trainables.strategies.lr_policies.LRPolicy`)
    best: dict  # the best epoch so far: monitor ``value``, ``epoch``, ``state`` (model), ``val`` metrics

    def train_inputs(self, idx: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor: ...

    def eval_inputs(self, images: torch.Tensor) -> torch.Tensor: ...

    def autocast(self) -> Any: ...

    def split_predictions(self, split: str, features: bool = False) -> Any:
        """The model's predictions of ``split``: ``probs`` float64 [N, C], ``labels`` int64 [N] and,
        with ``features``, the head's input ``features`` float32 [N, D]."""


class TrialHook:
    """Base hook: every point does nothing. Subclasses set ``active`` and override what they need."""

    name: ClassVar[str] = ""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    @classmethod
    def active(cls, cfg: Any) -> bool:
        """Whether this trial config uses the strategy."""
        return False

    @classmethod
    def validate(cls, cfg: Any) -> None:
        """Check (and complete) the config's cross-field rules of the strategy."""

    def initial_weights(self, arrays: ImageArrays, device: torch.device) -> Path | None:
        return None

    def network(self, class_names: list[str], build: Callable[[int], nn.Module]) -> nn.Module | None:
        return None

    def setup(self, state: LoopState) -> None:
        pass

    def epoch_start(self, state: LoopState) -> None:
        pass

    def batch(self, state: LoopState, x: torch.Tensor, targets: list[tuple[float, torch.Tensor]]
              ) -> tuple[torch.Tensor, list[tuple[float, torch.Tensor]]]:
        return x, targets

    def trained(self, state: LoopState) -> None:
        pass

    def epoch_end(self, state: LoopState) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: LoopState, saved: dict) -> None:
        pass


HOOKS: Registry[type[TrialHook]] = Registry("trial hook")


def register_hook(name: str) -> Callable[[type[TrialHook]], type[TrialHook]]:
    """Class decorator: register a :class:`TrialHook` subclass under ``name``."""

    def add(cls: type[TrialHook]) -> type[TrialHook]:
        cls.name = name
        return HOOKS.register(name)(cls)

    return add


def active_hooks(cfg: Any) -> list[TrialHook]:
    """The hooks a trial config uses, built for it, in name order."""
    return [HOOKS.get(n)(cfg) for n in HOOKS if HOOKS.get(n).active(cfg)]
