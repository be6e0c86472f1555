"""Strategy presets: named points in the strategy dimensions (thesis, Table 1)."""
from __future__ import annotations

from ..registry import Registry

PRESETS: Registry[dict] = Registry("strategy preset")

for _name, _knobs in {
    "control": {"augment": "none", "sampler": "uniform", "loss": "ce"},
    "augment": {"augment": "standard", "sampler": "uniform", "loss": "ce"},
    "upsample": {"augment": "none", "sampler": "class_balanced", "loss": "ce"},
    "loss_weight": {"augment": "none", "sampler": "uniform", "loss": "class_weighted"},
    "combined": {"augment": "standard", "sampler": "class_balanced", "loss": "class_weighted"},
}.items():
    PRESETS.register(_name)(_knobs)

# Modern imbalance losses, otherwise the control setting (knobs in ``loss_options``).
for _name, _loss in {"focal": "focal", "class_balanced_loss": "class_balanced",
                     "logit_adjusted": "logit_adjusted", "balanced_softmax": "balanced_softmax"}.items():
    PRESETS.register(_name)({"augment": "none", "sampler": "uniform", "loss": _loss})

