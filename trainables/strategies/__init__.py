"""Strategy dimensions, each a registry by name, the named presets that combine them, and the
strategies that enter the loop through hooks (VaB-AL, the cascade, DRW, the MixUps, cRT, tau-norm)."""
from . import cascade, decoupling, drw, mixup, vabal  # noqa: F401  (register their hooks)
from .freeze import FREEZES
from .initial_weights import INITS
from .losses import LOSSES
from .lr_policies import LR_POLICIES
from .optimizers import OPTIMIZERS
from .presets import PRESETS
from .samplers import SAMPLERS

__all__ = ["FREEZES", "INITS", "LOSSES", "LR_POLICIES", "OPTIMIZERS", "PRESETS", "SAMPLERS"]
