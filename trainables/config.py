"""A trial's configuration, validated with pydantic. Bad values stop with one :class:`ConfigError`
whose message names the field (``epochs: Input should be greater than or equal to 1``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .data import SOURCES
from .data.augment import AUGMENTS
from .errors import ConfigError
from .models import MODELS
from .registry import Registry
from .strategies import FREEZES, INITS, LOSSES, LR_POLICIES, OPTIMIZERS, PRESETS, SAMPLERS
from .strategies.vabal import VabalConfig

METRIC_NAMES = ("loss", "accuracy", "balanced_accuracy", "macro_f1", "sensitivity", "ppv",
                "specificity", "pr_auc")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


def _in(registry: Registry, value: str) -> str:
    if value not in registry:
        raise ValueError(f"unknown {registry.kind} {value!r}; registered: {', '.join(registry)}")
    return value


class SyntheticConfig(_Strict):
    """Parameters of the built-in generator (:mod:`trainables.data.synthetic`)."""

    n: int = Field(3000, ge=30)
    seed: int = 0
    difficulty: float = Field(1.0, gt=0)
    shares: dict[str, float] | None = None
    images_per_patient: float = Field(3.0, ge=1)


class DataConfig(_Strict):
    """Where the images come from, their sizes, and how they are split."""

    source: str = "synthetic"
    path: Path | None = None
    metadata: list[Path] = []
    class_names: list[str] | None = None
    load_size: int = Field(36, ge=8)
    image_size: int = Field(32, ge=8)
    channels: Literal[1, 3] = 1
    positive_class: str = "covid"
    normal_class: str = "normal"  # the cascade's first stage: normal vs the other classes
    val_fraction: float = Field(0.15, gt=0, lt=1)
    test_fraction: float = Field(0.15, gt=0, lt=1)
    split_seed: int = 0
    strict: bool = False
    cache_dir: Path | None = None
    synthetic: SyntheticConfig = SyntheticConfig()

    _source = field_validator("source")(lambda v: _in(SOURCES, v))

    @model_validator(mode="after")
    def _sizes(self) -> DataConfig:
        if self.image_size > self.load_size:
            raise ValueError(f"image_size ({self.image_size}) must be <= load_size ({self.load_size})")
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must be < 1")
        return self


class LossOptions(_Strict):
    """Knobs of the parameterised losses (each loss reads its own)."""

    gamma: float = Field(2.0, ge=0)         # focal
    beta: float = Field(0.999, ge=0, lt=1)  # class_balanced (effective number of samples)
    tau: float = Field(1.0, ge=0)           # logit_adjusted


def metric_name(v: str, splits: tuple[str, ...] = ("train", "val")) -> str:
    """A ``<split>/<metric>`` name the loop reports every epoch."""
    split, _, name = v.partition("/")
    if split not in splits or not (name in METRIC_NAMES or name.startswith("recall_")):
        raise ValueError(f"expected val/<metric> with metric in {', '.join(METRIC_NAMES)} or "
                         f"recall_<class>, got {v!r}")
    return v


class LROptions(_Strict):
    """Knobs of the LR policies (each policy reads its own); onecycle's max_lr is ``lr``."""

    pct_start: float = Field(0.3, gt=0, lt=1)  # onecycle: share of the steps spent warming up
    metric: str = "val/loss"                   # plateau: minimised if a loss, else maximised
    factor: float = Field(0.1, gt=0, lt=1)     # plateau
    patience: int = Field(2, ge=0)             # plateau: epochs without improvement
    warmup_epochs: int = Field(0, ge=0)        # cosine: linear warm-up before the annealing

    _val_metric = field_validator("metric")(lambda v: metric_name(v, ("val",)))  # what after_epoch sees


class SSLConfig(_Strict):
    """The in-domain SimCLR pre-stage of ``init: ssl`` (run once per distinct setting, cached)."""

    epochs: int = Field(20, ge=1)
    batch_size: int = Field(128, ge=4)
    lr: float = Field(1e-3, gt=0)
    temperature: float = Field(0.2, gt=0)
    dim: int = Field(64, ge=2)       # projection size: the backbone's head during pretraining
    augment: str = "standard"        # how the two views of an image are drawn
    seed: int = 0                    # shared by every trial: one pre-stage, whatever the trial seed

    _augment = field_validator("augment")(lambda v: _in(AUGMENTS, v))


class TrialConfig(_Strict):
    """Everything one trial needs. ``strategy`` names a preset whose knobs fill the strategy
    dimensions (``sampler``, ``loss``, ``augment``, ...) that the config does not set itself."""

    seed: int = 0
    data: DataConfig = DataConfig()
    model: str = "simple_cnn"
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
    tta: int = Field(0, ge=0)
    tta_augment: str = "standard"
    monitor: str = "val/balanced_accuracy"
    monitor_mode: Literal["max", "min"] = "max"
    test_every_epoch: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["off", "bf16"] = "off"
    channels_last: bool = False
    num_threads: int | None = Field(None, ge=1)

    _model = field_validator("model")(lambda v: _in(MODELS, v))
    _init = field_validator("init")(lambda v: _in(INITS, v))
    _freeze = field_validator("freeze")(lambda v: _in(FREEZES, v))
    _optimizer = field_validator("optimizer")(lambda v: _in(OPTIMIZERS, v))
    _lr_policy = field_validator("lr_policy")(lambda v: _in(LR_POLICIES, v))
    _sampler = field_validator("sampler")(lambda v: _in(SAMPLERS, v))
    _loss = field_validator("loss")(lambda v: _in(LOSSES, v))
    _augment = field_validator("augment", "tta_augment")(lambda v: _in(AUGMENTS, v))

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, values: Any) -> Any:
        if isinstance(values, dict) and values.get("strategy") is not None:
            name = values["strategy"]
            if name not in PRESETS:
                raise ValueError(f"strategy: unknown strategy preset {name!r}; registered: "
                                 f"{', '.join(PRESETS)}")
            values = deep_merge(PRESETS.get(name), values)
        return values

    @model_validator(mode="after")
    def _vabal(self) -> TrialConfig:
        if self.vabal is None:
            if self.sampler == "vabal":
                raise ValueError("sampler: 'vabal' samples by VaB-AL weights; add a vabal: section "
                                 "with use_for sampler or both")
            return self
        if self.cascade:
            raise ValueError("vabal: the cascade's two networks list no stage outputs; use VaB-AL "
                             "with a single model")
        if self.vabal.refresh_every >= self.epochs:
            raise ValueError(f"vabal.refresh_every ({self.vabal.refresh_every}) must be < epochs "
                             f"({self.epochs}): otherwise the weights are never refreshed")
        if not MODELS.get(self.model).has_stages:
            staged = ", ".join(n for n in MODELS if MODELS.get(n).has_stages)
            raise ValueError(f"vabal: model {self.model!r} cannot list its stage outputs, which "
                             f"VaB-AL reads; use one of {staged}")
        if self.vabal.in_sampler:
            if self.sampler not in ("uniform", "vabal"):
                raise ValueError(f"sampler: vabal.use_for={self.vabal.use_for} samples by the VaB-AL "
                                 f"weights; leave sampler unset or 'vabal' (got {self.sampler!r})")
            self.sampler = "vabal"
        elif self.sampler == "vabal":
            raise ValueError("sampler: 'vabal' needs vabal.use_for sampler or both (it is 'loss')")
        return self

    _monitor = field_validator("monitor")(metric_name)

    @model_validator(mode="after")
    def _combinations(self) -> TrialConfig:
        if self.lr_policy == "cosine" and self.lr_options.warmup_epochs >= self.epochs:
            raise ValueError(f"lr_options.warmup_epochs ({self.lr_options.warmup_epochs}) must be "
                             f"< epochs ({self.epochs})")
        if self.init == "moco" and self.init_path is None:
            raise ValueError("init_path: init 'moco' needs the MoCo checkpoint file")
        if self.init in ("scratch", "ssl") and self.init_path is not None:
            raise ValueError(f"init_path: init {self.init!r} reads no file")
        if self.freeze == "last_block" and not MODELS.get(self.model).has_stages:
            staged = ", ".join(n for n in MODELS if MODELS.get(n).has_stages)
            raise ValueError(f"freeze: 'last_block' needs a model made of stages ({staged}), "
                             f"not {self.model!r}")
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
