"""Losses: ``factory(class_counts, options) -> loss_fn(logits, targets, sample_weight=None)``.

``options`` is the trial's :class:`LossOptions` (``gamma``, ``beta``, ``tau``, ``max_margin``,
``scale``, ``drw_start``); each loss reads the knobs it needs. ``sample_weight`` is the per-sample weights hook (one weight
per sample in the batch, e.g. from VaB-AL). Weighted losses are normalised like PyTorch's weighted
cross entropy: ``sum(w_i * l_i) / sum(w_i)``, with ``w_i`` = class weight x sample weight.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from pydantic import Field

from ..registry import Registry, StrictModel


class LossOptions(StrictModel):
    """Knobs of the parameterised losses (``loss_options`` in a trial config; each loss reads its own)."""

    gamma: float = Field(2.0, ge=0)         # focal
    beta: float = Field(0.999, ge=0, lt=1)  # class_balanced (effective number of samples)
    tau: float = Field(1.0, ge=0)           # logit_adjusted
    max_margin: float = Field(0.5, gt=0)    # ldam: the rarest class's margin
    scale: float = Field(30.0, gt=0)        # ldam: logit scale s
    # DRW (deferred re-weighting, Cao et al. 2019): from this fraction of the epochs on, the loss weighs
    # each sample by its class's effective-number weight (``beta``); None: no re-weighting
    drw_start: float | None = Field(None, gt=0, lt=1)


LossFn = Callable[..., torch.Tensor]
LOSSES: Registry[Callable[[torch.Tensor, LossOptions], LossFn]] = Registry("loss")


def weighted_mean(losses: torch.Tensor, targets: torch.Tensor,
                  class_weight: torch.Tensor | None = None,
                  sample_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of per-sample ``losses``, weighted by class and per-sample weights when given."""
    if class_weight is None and sample_weight is None:
        return losses.mean()
    w = torch.ones_like(losses) if class_weight is None else class_weight[targets].to(losses.dtype)
    if sample_weight is not None:
        w = w * sample_weight.to(losses.dtype)
    return (w * losses).sum() / w.sum()


def weighted_cross_entropy(logits: torch.Tensor, targets: torch.Tensor,
                           class_weight: torch.Tensor | None = None,
                           sample_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross entropy with optional per-class and per-sample weights, weight-normalised mean."""
    if class_weight is None and sample_weight is None:
        return F.cross_entropy(logits, targets)
    return weighted_mean(F.cross_entropy(logits, targets, reduction="none"), targets, class_weight,
                         sample_weight)


def _mean_one(weight: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Scale per-class weights so their mean over the present classes is 1 (absent classes 0)."""
    weight = torch.where(present, weight, torch.zeros_like(weight))
    return (weight * present.sum() / weight.sum()).float()


def normalised_inverse_frequency(class_counts: torch.Tensor) -> torch.Tensor:
    """1 / count per class, scaled so the mean over classes is 1 (absent classes get 0)."""
    counts = class_counts.double()
    return _mean_one(1.0 / counts.clamp(min=1), counts > 0)


def effective_number_weights(class_counts: torch.Tensor, beta: float) -> torch.Tensor:
    """Cui et al. 2019: weight (1 - beta) / (1 - beta^n) per class (1 / effective number of
    samples), scaled to mean 1 over the present classes. beta 0 is uniform, beta -> 1 is 1/count."""
    counts = class_counts.double()
    effective = (1.0 - torch.pow(torch.tensor(beta, dtype=torch.double), counts)) / (1.0 - beta)
    return _mean_one(1.0 / effective.clamp(min=1e-12), counts > 0)


def log_prior(class_counts: torch.Tensor) -> torch.Tensor:
    """log of the training class frequencies (an absent class counts as 1 sample)."""
    counts = class_counts.double().clamp(min=1)
    return torch.log(counts / counts.sum()).float()


@LOSSES.register("ce")
def ce(class_counts: torch.Tensor, options: LossOptions) -> LossFn:
    def loss(logits, targets, sample_weight=None):
        return weighted_cross_entropy(logits, targets, None, sample_weight)

    return loss


def _class_weighted_ce(weight: torch.Tensor) -> LossFn:
    def loss(logits, targets, sample_weight=None):
        return weighted_cross_entropy(logits, targets, weight.to(logits.device), sample_weight)

    return loss


@LOSSES.register("class_weighted")
def class_weighted(class_counts: torch.Tensor, options: LossOptions) -> LossFn:
    """Thesis loss weighting: cross entropy with weights 1/count, normalised to mean 1."""
    return _class_weighted_ce(normalised_inverse_frequency(class_counts))


@LOSSES.register("class_balanced")
def class_balanced(class_counts: torch.Tensor, options: LossOptions) -> LossFn:
    """Class-balanced cross entropy (Cui et al. 2019): class weights from the effective number of
    samples with ``options.beta``."""
    return _class_weighted_ce(effective_number_weights(class_counts, options.beta))


@LOSSES.register("focal")
def focal(class_counts: torch.Tensor, options: LossOptions) -> LossFn:
    """Focal loss (Lin et al. 2017): ``-(1 - p_t)^gamma * log p_t``; gamma 0 is cross entropy."""
    gamma = options.gamma

    def loss(logits, targets, sample_weight=None):
        log_pt = torch.log_softmax(logits, 1).gather(1, targets[:, None]).squeeze(1)
        losses = -(1 - log_pt.exp()).pow(gamma) * log_pt
        return weighted_mean(losses, targets, None, sample_weight)

    return loss


def _prior_adjusted(class_counts: torch.Tensor, tau: float) -> LossFn:
    """Cross entropy on ``logits + tau * log prior`` (the adjustment applies in training only:
    evaluation reads the plain logits)."""
    shift = tau * log_prior(class_counts)

    def loss(logits, targets, sample_weight=None):
        return weighted_cross_entropy(logits + shift.to(logits.device), targets, None, sample_weight)

    return loss


@LOSSES.register("logit_adjusted")
def logit_adjusted(class_counts: torch.Tensor, options: LossOptions) -> LossFn:
    """Logit-adjusted loss (Menon et al. 2021) with ``options.tau``."""
    return _prior_adjusted(class_counts, options.tau)


@LOSSES.register("balanced_softmax")
def balanced_softmax(class_counts: torch.Tensor, options: LossOptions) -> LossFn:
    """Balanced softmax (Ren et al. 2020): softmax over ``logits + log count``, which equals the
    logit-adjusted loss with tau = 1 (log prior and log count differ by a constant per sample)."""
    return _prior_adjusted(class_counts, 1.0)


def ldam_margins(class_counts: torch.Tensor, max_margin: float) -> torch.Tensor:
    """LDAM's per-class margins (Cao et al. 2019, eq. 12): proportional to n_c^(-1/4), the largest
    (the rarest class's) ``max_margin``; an absent class counts as 1 sample. float32 ``[classes]``."""
    margins = class_counts.double().clamp(min=1).pow(-0.25)
    return (margins * (max_margin / margins.max())).float()


@LOSSES.register("ldam")
def ldam(class_counts: torch.Tensor, options: LossOptions) -> LossFn:
    """Label-distribution-aware margin loss (Cao et al. 2019, "Learning Imbalanced Datasets with
    Label-Distribution-Aware Margin Loss"): cross entropy of ``scale * (logits - m_y e_y)``, the true
    class's logit lowered by its margin (:func:`ldam_margins`), as the authors' code and the LongTailCXR
    benchmark (Holste et al. 2022) compute it on a plain linear head (``scale`` 30). With
    ``loss_options.drw_start`` it is LDAM-DRW."""
    margins, scale = ldam_margins(class_counts, options.max_margin), options.scale

    def loss(logits, targets, sample_weight=None):
        margin = margins.to(logits.device)[targets].to(logits.dtype)
        shifted = logits.scatter_add(1, targets[:, None], -margin[:, None])
        return weighted_cross_entropy(scale * shifted, targets, None, sample_weight)

    return loss
