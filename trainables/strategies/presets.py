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
# Modern imbalance losses, otherwise the control setting (knobs in ``loss_options``).
for _name, _loss in {"focal": "focal", "class_balanced_loss": "class_balanced",
                     "logit_adjusted": "logit_adjusted", "balanced_softmax": "balanced_softmax"}.items():
    PRESETS.register(_name)({"augment": "none", "sampler": "uniform", "loss": _loss})

# LDAM-DRW (Cao et al. 2019), as the LongTailCXR benchmark runs it (Holste et al. 2022): LDAM from the
# start, effective-number class weights (beta 0.9999) for the last 20% of the epochs.
PRESETS.register("ldam_drw")({"augment": "none", "sampler": "uniform", "loss": "ldam",
                              "loss_options": {"drw_start": 0.8, "beta": 0.9999}})

# MixUp (Zhang et al. 2018) and Balanced-MixUp (Galdran et al. 2021), alpha 0.2 as LongTailCXR runs them.
PRESETS.register("mixup")({"augment": "none", "sampler": "uniform", "loss": "ce", "mixup": {"alpha": 0.2}})
PRESETS.register("balanced_mixup")({"augment": "none", "sampler": "uniform", "loss": "ce",
                                    "mixup": {"alpha": 0.2, "balanced": True}})

# Decoupling (Kang et al. 2020) as LongTailCXR runs it: plain training, then the classifier retrained
# with class-balanced sampling (cRT, the last 2 epochs) or its weights tau-normalised (tau on validation).
PRESETS.register("crt")({"augment": "none", "sampler": "uniform", "loss": "ce", "crt": {"epochs": 2}})
PRESETS.register("tau_norm")({"augment": "none", "sampler": "uniform", "loss": "ce", "tau_norm": {}})

# Report 004's learning-rate policies (ResNet50): constant 5e-4; one-cycle with weight decay 1e-4
# and gradient clipping 0.1 (its max_lr is ``lr``); ReduceLROnPlateau from 1e-3 (factor 0.15) and
# from 2e-4 (factor 0.7), patience 2 on the validation loss; plus cosine with one warm-up epoch.
for _name, _knobs in {
    "lr_constant": {"lr_policy": "constant", "lr": 5e-4},
    "lr_onecycle": {"lr_policy": "onecycle", "weight_decay": 1e-4, "grad_clip": 0.1},
    "lr_plateau_fast": {"lr_policy": "plateau", "lr": 1e-3, "lr_options": {"factor": 0.15, "patience": 2}},
    "lr_plateau_gentle": {"lr_policy": "plateau", "lr": 2e-4, "lr_options": {"factor": 0.7, "patience": 2}},
    "lr_cosine": {"lr_policy": "cosine", "lr_options": {"warmup_epochs": 1}},
}.items():
    PRESETS.register(_name)(_knobs)

# Threshold moving: the control model, every decision taken at the validation split's Youden
# threshold for the positive class instead of the argmax (Buda et al. 2018, "A systematic study of the
# class imbalance problem in convolutional neural networks").
PRESETS.register("threshold_moving")({"augment": "none", "sampler": "uniform", "loss": "ce",
                                      "evaluation": {"decision": "youden"}})

# Report 001's cascade of two classifiers, otherwise the control setting.
PRESETS.register("cascade")({"augment": "none", "sampler": "uniform", "loss": "ce", "cascade": True})
