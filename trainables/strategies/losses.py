"""Losses: ``factory(class_counts) -> loss_fn(logits, targets, sample_weight=None)``.

``sample_weight`` is the per-sample weights hook (one weight per sample in the batch, e.g. from
VaB-AL). Weighted losses are normalised like PyTorch's weighted cross entropy:
``sum(w_i * l_i) / sum(w_i)``.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..registry import Registry

LossFn = Callable[..., torch.Tensor]
LOSSES: Registry[Callable[[torch.Tensor], LossFn]] = Registry("loss")


def weighted_cross_entropy(logits: torch.Tensor, targets: torch.Tensor,
                           class_weight: torch.Tensor | None = None,
                           sample_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross entropy with optional per-class and per-sample weights, weight-normalised mean."""
    if class_weight is None and sample_weight is None:
        return F.cross_entropy(logits, targets)
    losses = F.cross_entropy(logits, targets, reduction="none")
    w = torch.ones_like(losses) if class_weight is None else class_weight[targets].to(losses.dtype)
    if sample_weight is not None:
        w = w * sample_weight.to(losses.dtype)
    return (w * losses).sum() / w.sum()


def normalised_inverse_frequency(class_counts: torch.Tensor) -> torch.Tensor:
    """1 / count per class, scaled so the mean over classes is 1 (absent classes get 0)."""
    counts = class_counts.double()
    inv = torch.where(counts > 0, 1.0 / counts.clamp(min=1), torch.zeros_like(counts))
    return (inv * (counts > 0).sum() / inv.sum()).float()


@LOSSES.register("ce")
def ce(class_counts: torch.Tensor) -> LossFn:
    def loss(logits, targets, sample_weight=None):
        return weighted_cross_entropy(logits, targets, None, sample_weight)

    return loss


@LOSSES.register("class_weighted")
def class_weighted(class_counts: torch.Tensor) -> LossFn:
    """Thesis loss weighting: cross entropy with weights 1/count, normalised to mean 1."""
    weight = normalised_inverse_frequency(class_counts)

    def loss(logits, targets, sample_weight=None):
        return weighted_cross_entropy(logits, targets, weight.to(logits.device), sample_weight)

    return loss
