"""Decoupling the representation from the classifier (Kang et al. 2020, "Decoupling Representation
and Classifier for Long-Tailed Recognition"), as the LongTailCXR benchmark runs it (Holste et al.
2022): the network learns its features from the natural class distribution, and only the
classifier (the model's head, its last linear layer) is re-balanced afterwards. Two hooks:

- ``crt`` (classifier re-training): stage 1 trains the network as configured for ``epochs -
  crt.epochs`` epochs. Stage 2 reloads stage 1's best model (by ``monitor``), re-initialises the
  head, freezes everything else (BatchNorm statistics too) and retrains the head for
  ``crt.epochs`` epochs with class-balanced sampling, a fresh optimiser and a fresh LR policy over
  those epochs. The trial's best model is stage 2's best epoch.
- ``tau_norm`` (tau-normalisation): after each training pass, the head evaluated is the trained
  one with each class's weight vector scaled to w_i / ||w_i||^tau and the bias dropped (Kang et
  al.'s classifier has none; LongTailCXR zeroes it), tau the first value of ``tau_norm.taus`` with
  the best balanced accuracy on the validation split (Kang et al. pick tau on a class-balanced
  validation set). Training continues from the trained weights, which the hook keeps (and saves
  with the checkpoint); every evaluated model, the best one included, is the normalised head's.
  (LongTailCXR's code divides by ||w_i||^-4 instead, a scaling up; Kang et al.'s formula is used.)
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import Field, field_validator
from sklearn.metrics import balanced_accuracy_score

from ..hooks import LoopState, TrialHook, register_hook
from ..models import MODELS, head
from ..registry import StrictModel
from ..seeds import stream_seed
from .drw import BALANCED_LOSSES
from .lr_policies import LR_POLICIES, check_lr_policy
from .optimizers import OPTIMIZERS
from .samplers import SAMPLERS, epoch_steps

STAGE2_SAMPLER = "class_balanced"
REBALANCING_LOSSES = (*BALANCED_LOSSES, "ldam")  # losses built on the class counts


class CRTConfig(StrictModel):
    """``crt`` in a trial config: how many of the trial's ``epochs`` retrain the classifier."""

    epochs: int = Field(2, ge=1)


class TauNormConfig(StrictModel):
    """``tau_norm`` in a trial config: the values of tau tried on the validation split."""

    taus: list[float] = Field(default_factory=lambda: [round(0.1 * i, 1) for i in range(21)], min_length=1)

    @field_validator("taus")
    @classmethod
    def _ascending(cls, v: list[float]) -> list[float]:
        if any(t < 0 for t in v):
            raise ValueError("tau must be >= 0 (0 keeps the weights, 1 gives every class a unit-norm weight)")
        return sorted(set(v))


def _refuse_with(cfg: Any, field: str) -> None:
    """Decoupling acts on one linear head, after or beside plain training: not on the cascade's
    two networks, and not together with another strategy that re-balances the same stage."""
    if cfg.cascade:
        raise ValueError(f"{field}: the cascade has two heads; decoupling retrains or normalises one")
    if not MODELS.get(cfg.model).linear_head:
        raise ValueError(f"{field}: {cfg.model}'s head is not a linear layer; decoupling retrains or normalises "
                         f"a linear classifier (models with one: {', '.join(n for n in MODELS if MODELS.get(n).linear_head)})")
    if cfg.crt is not None and cfg.tau_norm is not None:
        raise ValueError(f"{field}: crt and tau_norm are two ways to decouple the classifier: use one")


@register_hook("crt")
class ClassifierRetraining(TrialHook):
    """cRT (Kang et al. 2020): from epoch ``epochs - crt.epochs`` (0-based) on, the head alone is
    retrained from scratch with class-balanced sampling; reports ``train/crt`` (1 in stage 2)."""

    @classmethod
    def active(cls, cfg: Any) -> bool:
        return cfg.crt is not None

    @classmethod
    def validate(cls, cfg: Any) -> None:
        if cfg.crt is None:
            return
        _refuse_with(cfg, "crt")
        if cfg.crt.epochs >= cfg.epochs:
            raise ValueError(f"crt.epochs: {cfg.crt.epochs} of the trial's {cfg.epochs} epochs leave none for "
                             "stage 1 (the representation)")
        for name, other in (("mixup", cfg.mixup), ("vabal", cfg.vabal), ("loss_options.drw_start",
                                                                         cfg.loss_options.drw_start)):
            if other is not None:
                raise ValueError(f"crt: {name} would also act on the re-balanced stage 2; cRT retrains the "
                                 "classifier with class-balanced sampling and the plain loss")
        if cfg.loss in REBALANCING_LOSSES:
            raise ValueError(f"crt: loss {cfg.loss!r} re-balances the classes, and stage 2's class-balanced "
                             "sampling would re-balance them again; use ce or focal")
        try:
            check_lr_policy(cfg.lr_policy, cfg.lr_options, cfg.crt.epochs)
        except ValueError as exc:
            raise ValueError(f"crt.epochs: stage 2 runs its own LR policy over {cfg.crt.epochs} epoch(s): {exc}"
                             ) from None

    def setup(self, state: LoopState) -> None:
        self.switch = self.cfg.epochs - self.cfg.crt.epochs
        self.stage2 = False

    def epoch_start(self, state: LoopState) -> None:
        if self.stage2 or state.epoch < self.switch:
            return
        state.model.load_state_dict(state.best["state"])  # stage 1's best model
        layer = head(state.model)
        with torch.random.fork_rng(devices=[state.device] if state.device.type == "cuda" else []):
            torch.manual_seed(stream_seed(self.cfg.seed, "crt"))
            layer.reset_parameters()
        self._stage2(state)
        state.best = {}  # the trial's best model is a retrained classifier

    def _stage2(self, state: LoopState) -> None:
        """Freeze all but the head; a fresh optimiser and LR policy over stage 2; balanced sampling."""
        cfg, layer = self.cfg, head(state.model)
        state.model.zero_grad(set_to_none=True)  # stage 1's last gradients would count in grad_clip's norm
        state.model.requires_grad_(False)
        layer.requires_grad_(True)
        state.optimizer = OPTIMIZERS.get(cfg.optimizer)(list(layer.parameters()), cfg.lr, cfg.weight_decay,
                                                        cfg.momentum)
        labels = state.splits["train"].labels.cpu()
        draws = len(SAMPLERS.get(STAGE2_SAMPLER)(labels, len(state.class_names), torch.Generator(), None))
        state.policy = LR_POLICIES.get(cfg.lr_policy)(state.optimizer, cfg.crt.epochs,
                                                      epoch_steps(draws, cfg.batch_size), cfg.lr_options)
        state.sampler = STAGE2_SAMPLER
        self.stage2 = True

    def epoch_end(self, state: LoopState) -> dict[str, float]:
        return {"train/crt": float(self.stage2)}

    def state_dict(self) -> dict:
        return {"stage2": self.stage2}

    def load_state_dict(self, state: LoopState, saved: dict) -> None:
        if saved["stage2"]:  # the checkpoint holds the stage-2 model; its optimiser state follows
            self._stage2(state)


def tau_normalised(weight: torch.Tensor, tau: float) -> torch.Tensor:
    """Each row (class) of a head's ``weight`` ``[C, D]`` divided by its L2 norm to the power
    ``tau`` (Kang et al. 2020, eq. 5); a zero row stays zero."""
    norms = weight.norm(dim=1, keepdim=True)
    return weight / torch.where(norms > 0, norms, torch.ones_like(norms)).pow(tau)


def choose_tau(features: np.ndarray, labels: np.ndarray, weight: torch.Tensor, taus: list[float]) -> float:
    """The first of ``taus`` (ascending) whose normalised head, without bias, gives the best
    balanced accuracy (argmax decisions) on ``features`` float ``[N, D]`` with ``labels`` int
    ``[N]``."""
    x = torch.from_numpy(np.asarray(features, np.float32))
    w = weight.detach().float().cpu()
    scores = [balanced_accuracy_score(labels, (x @ tau_normalised(w, t).T).argmax(1).numpy()) for t in taus]
    return taus[int(np.argmax(scores))]


@register_hook("tau_norm")
class TauNormalisation(TrialHook):
    """tau-normalisation (Kang et al. 2020) of the evaluated head, tau picked on validation after
    every training pass; reports ``val/tau``."""

    @classmethod
    def active(cls, cfg: Any) -> bool:
        return cfg.tau_norm is not None

    @classmethod
    def validate(cls, cfg: Any) -> None:
        if cfg.tau_norm is not None:
            _refuse_with(cfg, "tau_norm")

    def setup(self, state: LoopState) -> None:
        self.trained_head: dict[str, torch.Tensor] | None = None  # the weights training continues from
        self.tau = float("nan")

    def epoch_start(self, state: LoopState) -> None:
        if self.trained_head is not None:
            head(state.model).load_state_dict(self.trained_head)

    @torch.no_grad()
    def trained(self, state: LoopState) -> None:
        layer = head(state.model)
        self.trained_head = {k: v.detach().clone() for k, v in layer.state_dict().items()}
        val = state.split_predictions("val", features=True)
        self.tau = choose_tau(val.features, val.labels, layer.weight, self.cfg.tau_norm.taus)
        layer.weight.copy_(tau_normalised(layer.weight, self.tau))
        if layer.bias is not None:
            layer.bias.zero_()

    def epoch_end(self, state: LoopState) -> dict[str, float]:
        return {"val/tau": self.tau}

    def state_dict(self) -> dict:
        return {"trained_head": self.trained_head, "tau": self.tau}

    def load_state_dict(self, state: LoopState, saved: dict) -> None:
        self.trained_head, self.tau = saved["trained_head"], saved["tau"]
