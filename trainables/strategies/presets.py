"""Strategy presets: named points in the strategy dimensions (thesis, Table 1 and VaB-AL)."""
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

for _use in ("loss", "sampler", "both"):
    PRESETS.register(f"vabal_{_use}")({"augment": "standard", "loss": "ce", "vabal": {"use_for": _use}})
