"""MixUp and Balanced-MixUp: the training batch, after augmentation on the device, is mixed with a
partner batch, and the loss with it (a hook at the ``batch`` point).

- ``mixup`` (Zhang et al. 2018, "mixup: Beyond Empirical Risk Minimization"): the partner is the
  batch itself in a random order; lambda ~ Beta(alpha, alpha); x = lambda x_i + (1 - lambda) x_j and
  loss = lambda L(y_i) + (1 - lambda) L(y_j).
- ``balanced_mixup`` (Galdran et al. 2021, "Balanced-MixUp for Highly Imbalanced Medical Image
  Classification"): the partner comes from a class-balanced draw of the training split (each class
  equally likely, with replacement); lambda ~ Beta(alpha, 1), so lambda is small for a small alpha;
  x = (1 - lambda) x_instance + lambda x_balanced, the loss likewise.

One lambda per batch, as both papers and the LongTailCXR benchmark draw it. Every draw comes from
the hook's own generators, seeded from the trial's seed and saved in the checkpoint (the balanced
partners' augmentation too, so the instance batches see the same augmentation as without mixing).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import Field

from ..hooks import LoopState, TrialHook, register_hook
from ..registry import StrictModel
from ..seeds import stream_seed
from .samplers import inverse_class_frequency


class MixupConfig(StrictModel):
    """``mixup`` in a trial config: the Beta distribution's ``alpha`` and whether the partner batch is
    class-balanced (Balanced-MixUp)."""

    alpha: float = Field(0.2, gt=0)
    balanced: bool = False


Targets = list[tuple[float, torch.Tensor]]


def mix(x: torch.Tensor, partner: torch.Tensor, targets: Targets, partner_idx: torch.Tensor,
        lam: float) -> tuple[torch.Tensor, Targets]:
    """``lam`` x + (1 - ``lam``) ``partner`` (float ``[B, C, H, W]`` each), and the targets
    weighted alike: each of ``targets`` by ``lam``, ``partner_idx`` by 1 - ``lam``."""
    return lam * x + (1.0 - lam) * partner, [(w * lam, j) for w, j in targets] + [(1.0 - lam, partner_idx)]


class _Mixing(TrialHook):
    """What both MixUps share: the generator of their draws, saved with the checkpoint."""

    balanced = False

    @classmethod
    def active(cls, cfg: Any) -> bool:
        return cfg.mixup is not None and cfg.mixup.balanced == cls.balanced

    def setup(self, state: LoopState) -> None:
        seed = stream_seed(self.cfg.seed, "mixup")
        self.rng = np.random.default_rng(seed)
        self.gen = torch.Generator().manual_seed(seed)
        self.aug_gen = torch.Generator(device=state.device).manual_seed(stream_seed(self.cfg.seed, "mixup_augment"))

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "gen": self.gen.get_state(), "aug_gen": self.aug_gen.get_state()}

    def load_state_dict(self, state: LoopState, saved: dict) -> None:
        self.rng.bit_generator.state = saved["rng"]
        self.gen.set_state(saved["gen"].cpu())
        self.aug_gen.set_state(saved["aug_gen"].cpu())


@register_hook("mixup")
class MixUp(_Mixing):
    """MixUp within the batch (Zhang et al. 2018)."""

    def batch(self, state: LoopState, x: torch.Tensor, targets: Targets) -> tuple[torch.Tensor, Targets]:
        lam = float(self.rng.beta(self.cfg.mixup.alpha, self.cfg.mixup.alpha))
        order = torch.randperm(len(x), generator=self.gen).to(x.device)
        idx = targets[0][1]
        return mix(x, x[order], targets, idx[order], lam)


@register_hook("balanced_mixup")
class BalancedMixUp(_Mixing):
    """Balanced-MixUp (Galdran et al. 2021): the partner batch is a class-balanced draw."""

    balanced = True

    def setup(self, state: LoopState) -> None:
        super().setup(state)
        labels = state.splits["train"].labels.cpu()
        self.weights = inverse_class_frequency(labels, len(state.class_names))[labels]

    def partners(self, n: int) -> torch.Tensor:
        """``n`` training samples drawn with replacement, each class equally likely."""
        return torch.multinomial(self.weights, n, replacement=True, generator=self.gen)

    def batch(self, state: LoopState, x: torch.Tensor, targets: Targets) -> tuple[torch.Tensor, Targets]:
        lam = float(self.rng.beta(self.cfg.mixup.alpha, 1.0))
        picked = self.partners(len(x)).to(x.device)
        return mix(x, state.train_inputs(picked, self.aug_gen), targets, picked, 1.0 - lam)
