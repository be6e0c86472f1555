"""A trial's configuration, validated with pydantic: the composition of every dimension's options.
Bad values stop with one :class:`ConfigError` whose message names the field
(``epochs: Input should be greater than or equal to 1``).

Each section's schema lives beside what it configures (``DataConfig`` with the data, ``LossOptions``
with the losses, ``VabalConfig`` with VaB-AL, ...), and so do the cross-field rules of a strategy
(its hook's ``validate``, or the dimension's check); this module only puts them together.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from .data import DataConfig
from .data.augment import AUGMENTS
from .errors import ConfigError
from .hooks import HOOKS
from .metric_names import lower_is_better, metric_name
from .models import MODELS, ModelOptions, check_model_options
from .operating_points import EvaluationConfig, check_operating_point
from .registry import StrictModel
from .self_supervised import SSLConfig
from .strategies import FREEZES, INITS, LOSSES, LR_POLICIES, OPTIMIZERS, PRESETS, SAMPLERS
from .strategies.decoupling import CRTConfig, TauNormConfig
from .strategies.freeze import check_freeze
from .strategies.initial_weights import check_init_path
from .strategies.losses import LossOptions
from .strategies.lr_policies import LROptions, check_lr_policy
from .strategies.mixup import MixupConfig
from .strategies.vabal import VabalConfig


class TrialConfig(StrictModel):
    """Everything one trial needs. ``strategy`` names a preset whose knobs fill the strategy
    dimensions (``sampler``, ``loss``, ``augment``, ...) that the config does not set itself."""

    seed: int = 0
    data: DataConfig = DataConfig()
    model: str = "simple_cnn"
    model_options: ModelOptions = ModelOptions()
    init: str = "scratch"
    init_path: Path | None = None
    ssl: SSLConfig = SSLConfig()
    freeze: str = "none"
    cascade: bool = False
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=2)
    optimizer: str = "adam"
    lr: float = Field(2e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    lr_policy: str = "constant"
    lr_options: LROptions = LROptions()
    grad_clip: float | None = Field(None, gt=0)
    strategy: str | None = None
    sampler: str = "uniform"
    loss: str = "ce"
    loss_options: LossOptions = LossOptions()
    augment: str = "none"
    vabal: VabalConfig | None = None
    mixup: MixupConfig | None = None
    crt: CRTConfig | None = None
    tau_norm: TauNormConfig | None = None
    tta: int = Field(0, ge=0)
    tta_augment: str = "standard"
    evaluation: EvaluationConfig = EvaluationConfig()
    monitor: str = "val/balanced_accuracy"
    monitor_mode: Literal["max", "min"] = "max"
    test_every_epoch: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["off", "bf16"] = "off"
    channels_last: bool = False
    num_threads: int | None = Field(None, ge=1)

    _model = field_validator("model")(lambda v: MODELS.check(v))
    _init = field_validator("init")(lambda v: INITS.check(v))
    _freeze = field_validator("freeze")(lambda v: FREEZES.check(v))
    _optimizer = field_validator("optimizer")(lambda v: OPTIMIZERS.check(v))
    _lr_policy = field_validator("lr_policy")(lambda v: LR_POLICIES.check(v))
    _sampler = field_validator("sampler")(lambda v: SAMPLERS.check(v))
    _loss = field_validator("loss")(lambda v: LOSSES.check(v))
    _augment = field_validator("augment", "tta_augment")(lambda v: AUGMENTS.check(v))

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, values: Any) -> Any:
        if isinstance(values, dict) and values.get("strategy") is not None:
            name = values["strategy"]
            if name not in PRESETS:
                raise ValueError(f"strategy: {PRESETS.unknown(name)}")
            values = deep_merge(PRESETS.get(name), values)
        return values

    _monitor = field_validator("monitor")(metric_name)

    @model_validator(mode="after")
    def _combinations(self) -> TrialConfig:
        """Cross-field rules, each kept beside the strategy or dimension it belongs to."""
        for name in HOOKS:
            HOOKS.get(name).validate(self)
        check_lr_policy(self.lr_policy, self.lr_options, self.epochs)
        check_init_path(self.init, self.init_path)
        check_freeze(self.freeze, self.model)
        check_model_options(self.model, self.model_options)
        check_operating_point("monitor", self.monitor, self.evaluation)
        if lower_is_better(self.monitor) == (self.monitor_mode == "max"):
            want = "min" if self.monitor_mode == "max" else "max"
            raise ValueError(f"monitor_mode: {self.monitor} is {'minimised' if want == 'min' else 'maximised'}: with "
                             f"monitor_mode {self.monitor_mode} the best model would be the worst epoch's; set "
                             f"monitor_mode: {want}")
        return self


def deep_merge(base: dict, extra: dict) -> dict:
    """Recursive dict merge: ``extra`` wins, nested mappings merge."""
    merged = dict(base)
    for k, v in extra.items():
        merged[k] = (deep_merge(merged[k], v) if isinstance(v, dict) and isinstance(merged.get(k), dict)
                     else v)
    return merged


def format_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """One message, one line per problem, each starting with its dotted field path."""
    lines = []
    for err in exc.errors():
        path = ".".join(str(p) for p in (*([prefix] if prefix else []), *err["loc"]))
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{path}: {msg}" if path else msg)
    return "; ".join(lines)


def parse_config(config: dict | TrialConfig) -> TrialConfig:
    """Validate a trial config dict, raising :class:`ConfigError` that names the field."""
    if isinstance(config, TrialConfig):
        return config
    try:
        return TrialConfig.model_validate(config)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
