"""Deferred re-weighting (DRW; Cao et al. 2019, "Learning Imbalanced Datasets with
Label-Distribution-Aware Margin Loss"): train with the plain loss first, then weigh each sample by
its class's effective-number weight (Cui et al. 2019, ``loss_options.beta``; normalised like
PyTorch's weighted cross entropy), so the features learn from the natural distribution and the
decision boundary is re-balanced late. A hook: it gives the loss per-sample weights from the switch
epoch on, and holds no state (a resumed trial recomputes them from the epoch)."""
from __future__ import annotations

from typing import Any

import torch

from ..hooks import LoopState, TrialHook, register_hook
from .losses import effective_number_weights

BALANCED_LOSSES = ("class_weighted", "class_balanced", "logit_adjusted", "balanced_softmax")  # re-balance already
BALANCED_SAMPLERS = ("class_balanced", "undersample")


def drw_epoch(drw_start: float, epochs: int) -> int:
    """The number of epochs trained without re-weighting: ``drw_start`` x ``epochs`` rounded, at
    least 1 and at most ``epochs - 1`` (Cao et al.: 0.8 x 200 = 160)."""
    return min(max(1, round(drw_start * epochs)), epochs - 1)


@register_hook("drw")
class DeferredReweighting(TrialHook):
    """From epoch :func:`drw_epoch` on (0-based index of the epoch being trained), the loss weighs
    each training sample by its class's effective-number weight; reports ``train/drw`` (1 once it
    applies)."""

    @classmethod
    def active(cls, cfg: Any) -> bool:
        return cfg.loss_options.drw_start is not None

    @classmethod
    def validate(cls, cfg: Any) -> None:
        """DRW needs two epochs, a loss and a sampler that do not re-balance already (DRW defers the
        re-balancing), and the loss's per-sample weights to itself (VaB-AL's loss weights use them too)."""
        if cfg.loss_options.drw_start is None:
            return
        if cfg.epochs < 2:
            raise ValueError("loss_options.drw_start: deferred re-weighting needs at least 2 epochs")
        if cfg.loss in BALANCED_LOSSES:
            raise ValueError(f"loss_options.drw_start: loss {cfg.loss!r} re-balances the classes already; DRW "
                             "defers that: use it with ce, focal or ldam")
        if cfg.sampler in BALANCED_SAMPLERS:
            raise ValueError(f"loss_options.drw_start: sampler {cfg.sampler!r} re-balances the classes from the "
                             "first epoch; DRW defers the re-balancing: use it with sampler uniform")
        if cfg.vabal is not None and cfg.vabal.in_loss:
            raise ValueError("loss_options.drw_start: VaB-AL's per-sample loss weights (vabal.use_for "
                             f"{cfg.vabal.use_for}) and DRW's cannot both weigh the loss")

    def setup(self, state: LoopState) -> None:
        labels = state.splits["train"].labels.cpu()
        weights = effective_number_weights(torch.bincount(labels, minlength=len(state.class_names)),
                                           self.cfg.loss_options.beta)
        self.weights = weights[labels]  # float32 [N_train] on the CPU
        self.switch = drw_epoch(self.cfg.loss_options.drw_start, self.cfg.epochs)

    def epoch_start(self, state: LoopState) -> None:
        state.loss_weights = self.weights if state.epoch >= self.switch else None

    def epoch_end(self, state: LoopState) -> dict[str, float]:
        return {"train/drw": float(state.epoch > self.switch)}  # the epoch just trained was re-weighted
