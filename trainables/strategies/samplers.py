"""Samplers: the order (and multiplicity) in which one epoch visits the training samples.

A sampler is ``fn(labels, num_classes, generator, sample_weights) -> indices`` for one epoch;
``labels`` are the training labels on the CPU, ``generator`` the trial's data-order generator,
``sample_weights`` the per-sample weights a dynamic strategy keeps (None otherwise).
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from ..registry import Registry

Sampler = Callable[[torch.Tensor, int, torch.Generator, "torch.Tensor | None"], torch.Tensor]
SAMPLERS: Registry[Sampler] = Registry("sampler")


def inverse_class_frequency(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """1 / class count per class (thesis: [1/468, 1/7966, 1/5458]); 0 for an absent class."""
    counts = torch.bincount(labels, minlength=num_classes).double()
    return torch.where(counts > 0, 1.0 / counts.clamp(min=1), torch.zeros_like(counts))


def epoch_steps(draws: int, batch_size: int) -> int:
    """Optimiser steps of an epoch of ``draws`` samples: a last batch of one is skipped (BatchNorm
    cannot train on a single sample)."""
    full, rest = divmod(draws, batch_size)
    return full + (rest >= 2)


@SAMPLERS.register("uniform")
def uniform(labels, num_classes, gen, sample_weights=None) -> torch.Tensor:
    """Every sample once per epoch, shuffled."""
    return torch.randperm(len(labels), generator=gen)


@SAMPLERS.register("class_balanced")
def class_balanced(labels, num_classes, gen, sample_weights=None) -> torch.Tensor:
    """Upsampling: N draws with replacement, probability 1/count(class), so classes are equally drawn."""
    weights = inverse_class_frequency(labels, num_classes)[labels]
    return torch.multinomial(weights, len(labels), replacement=True, generator=gen)


@SAMPLERS.register("undersample")
def undersample(labels, num_classes, gen, sample_weights=None) -> torch.Tensor:
    """Report 002: per epoch, as many samples of each class as the rarest class has, shuffled."""
    present = [c for c in range(num_classes) if (labels == c).any()]
    per_class = min(int((labels == c).sum()) for c in present)
    picks = []
    for c in present:
        members = torch.nonzero(labels == c).flatten()
        picks.append(members[torch.randperm(len(members), generator=gen)[:per_class]])
    chosen = torch.cat(picks)
    return chosen[torch.randperm(len(chosen), generator=gen)]


@SAMPLERS.register("vabal")
def vabal(labels, num_classes, gen, sample_weights=None) -> torch.Tensor:
    """VaB-AL sampling: N draws with replacement, probability proportional to each sample's learned
    weight; before the first refresh (no weights yet) every sample once, shuffled, like uniform."""
    if sample_weights is None:
        return torch.randperm(len(labels), generator=gen)
    return torch.multinomial(sample_weights.double(), len(labels), replacement=True, generator=gen)
