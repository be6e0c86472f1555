"""Study specs: a pydantic-validated YAML document describing a fair search over strategies.

Every problem is reported as one :class:`SpecError` whose lines each start with the YAML path at
fault (``search.space.lr.loguniform: low must be > 0``), before anything runs.
"""
from __future__ import annotations

import builtins
import copy
import math
import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from trainables.config import TrialConfig, deep_merge, format_validation_error, parse_config
from trainables.data import DataConfig
from trainables.errors import ConfigError
from trainables.metric_names import lower_is_better, metric_name
from trainables.operating_points import check_operating_point
from trainables.registry import StrictModel
from trainables.strategies import PRESETS

from .errors import SpecError

DISTRIBUTIONS = ("loguniform", "uniform", "int", "choice")
# Trial config keys a spec sets elsewhere than in ``training``.
NOT_TRAINING = {"data", "model", "seed", "strategy", "sampler", "loss", "augment"}


class Distribution(StrictModel):
    """One searchable value: exactly one of ``loguniform: [low, high]``, ``uniform: [low, high]``,
    ``int: [low, high]`` (inclusive) or ``choice: [a, b, ...]``."""

    loguniform: list[float] | None = None
    uniform: list[float] | None = None
    int: list[builtins.int] | None = None  # builtins: ``int`` is this field inside the class
    choice: list[Any] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Distribution:
        given = [k for k in DISTRIBUTIONS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(DISTRIBUTIONS)} (got {given or 'none'})")
        return self

    @field_validator("loguniform", "uniform", "int")
    @classmethod
    def _bounds(cls, v: list | None, info) -> list | None:
        if v is None:
            return v
        if len(v) != 2:
            raise ValueError("expected [low, high]")
        low, high = v
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError("bounds must be finite")
        if info.field_name == "loguniform" and low <= 0:
            raise ValueError("low must be > 0")
        if low >= high:
            raise ValueError(f"low ({low}) must be < high ({high})")
        return v

    @field_validator("choice")
    @classmethod
    def _choices(cls, v: list | None) -> list | None:
        if v is not None and not v:
            raise ValueError("choice needs at least one value")
        return v

    @property
    def kind(self) -> str:
        return next(k for k in DISTRIBUTIONS if getattr(self, k) is not None)

    @property
    def args(self) -> list:
        return getattr(self, self.kind)

    def examples(self) -> list:
        """Values that span the distribution (bounds, or every choice), checked before any run."""
        return list(self.args)


class SearchConfig(StrictModel):
    space: dict[str, Distribution] = {}
    strategy_space: dict[str, dict[str, Distribution]] = {}
    samples_per_strategy: int = Field(8, ge=1)
    metric: str = "val/balanced_accuracy"
    objectives: list[str] = []
    mode: Literal["max", "min"] = Field("max", validate_default=True)
    sampler: Literal["tpe", "nsga2"] = "tpe"
    startup_trials: int | None = Field(None, ge=1)
    seed: int = 0
    max_concurrent: int | None = Field(None, ge=1)
    storage: str | None = None  # Optuna's storage URI; None: a SQLite file beside MLflow's (or the study's)

    @field_validator("storage")
    @classmethod
    def _storage(cls, v: str | None) -> str | None:
        """An SQLAlchemy database URL Optuna's RDB storage takes, without a password (the spec is
        logged to MLflow: libpq reads ``PGPASSWORD`` or ``~/.pgpass``)."""
        if v is None:
            return v
        scheme = v.split("://", 1)[0] if "://" in v else ""
        if scheme.split("+")[0] not in ("sqlite", "postgresql", "mysql"):
            raise ValueError(f"{v!r} is not a database URL Optuna takes (sqlite:///path.db, "
                             "postgresql://user@host:5432/db, mysql://user@host/db)")
        if urlparse(v).password:
            raise ValueError("holds a password, and the spec is logged to MLflow: leave it out of the URL and "
                             "set PGPASSWORD (or ~/.pgpass) where the driver runs")
        return v

    @field_validator("startup_trials")
    @classmethod
    def _population(cls, v: int | None, info) -> int | None:
        if v is not None and v < 2 and info.data.get("sampler") == "nsga2":
            raise ValueError("NSGA-II's population (its startup trials) needs at least 2 members")
        return v

    @property
    def startup(self) -> int:
        """Trials per strategy the sampler draws at random before it uses what it learned: TPE's
        ``n_startup_trials`` (Optuna's default 10) or NSGA-II's first generation (default 50)."""
        return self.startup_trials or (50 if self.sampler == "nsga2" else 10)

    def random_search_note(self) -> str | None:
        """A note when the budget never gets past the sampler's random startup trials."""
        if self.samples_per_strategy > self.startup:
            return None
        return (f"note: search.samples_per_strategy ({self.samples_per_strategy}) is not above the "
                f"{self.sampler.upper()} sampler's {self.startup} random startup trials, so every "
                "strategy's search is random sampling; set search.startup_trials below it")

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, v: list[str]) -> list[str]:
        if v and len(v) < 2:
            raise ValueError("give two or more objectives (a single one is search.metric)")
        for m in v:
            metric_name(m, ("val", "val_tta"))
        return v

    _metric = field_validator("metric")(lambda v: metric_name(v, ("val", "val_tta")))

    @field_validator("mode")
    @classmethod
    def _metric_direction(cls, v: str, info) -> str:
        """The metric goes the way of ``mode``: losses, Brier score and ECE are minimised."""
        metric = info.data.get("metric")
        if metric and not info.data.get("objectives") and lower_is_better(metric) == (v == "max"):
            want = "min" if v == "max" else "max"
            raise ValueError(f"{metric} is {'minimised' if want == 'min' else 'maximised'}: with mode {v} "
                             f"the search would look for the worst config; set search.mode: {want}")
        return v

    @model_validator(mode="after")
    def _one_direction(self) -> SearchConfig:
        """Every objective goes the way of ``mode``."""
        wrong = [m for m in self.objectives if lower_is_better(m) == (self.mode == "max")]
        if wrong:
            verb = "maximised" if self.mode == "max" else "minimised"
            raise ValueError(f"objectives: {', '.join(wrong)} cannot be {verb} with the others "
                             f"(mode {self.mode}); every objective shares search.mode")
        return self


class SchedulerConfig(StrictModel):
    type: Literal["asha", "fifo"] = "asha"
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(3.0, gt=1)


class ResourcesConfig(StrictModel):
    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)


class TrackingConfig(StrictModel):
    uri: str = "sqlite:///mlflow.db"
    experiment: str | None = None


class RayConfig(StrictModel):
    address: str | None = None
    num_cpus: int | None = Field(None, ge=1)
    num_gpus: int | None = Field(None, ge=0)
    object_store_memory: int | None = Field(None, ge=78643200)
    autoscaling: bool = False  # an autoscaler adds nodes: trial requests larger than today's nodes may wait


class FailureSpec(StrictModel):
    max_failures: int = Field(1, ge=-1)


class RepeatsConfig(StrictModel):
    """The repeat phase: each strategy's best config re-run over paired seeds, full budget."""

    seeds: int = Field(10, ge=1)
    first_seed: int = Field(100, ge=0)
    # one search per search seed (Optuna sampler and search trials' seeds), each repeated over the
    # paired seeds; None: [search.seed] (Bouthillier et al., MLSys 2021: randomise the search too)
    search_seeds: list[int] | None = Field(None, min_length=1)
    vary_split: bool = False
    use: Literal["final", "best"] = "final"
    metrics: list[str] = ["test/sensitivity", "test/ppv", "test/balanced_accuracy", "test/accuracy",
                          "test/macro_f1", "test/auroc", "test/pr_auc", "test/specificity"]

    @field_validator("metrics")
    @classmethod
    def _test_metrics(cls, v: list[str]) -> list[str]:
        """Test-split metrics the trials report (recall_<class> is checked against the data's
        classes once they are loaded)."""
        for m in v:
            split, _, name = m.partition("/")
            if split.partition("_at_")[0] not in ("test", "test_tta") or not name:
                raise ValueError(f"{m!r}: repeats are compared on the test split: use test/<metric> "
                                 "(or test_tta/<metric> with tta)")
            metric_name(m, ("test", "test_tta"))
        return v


class CompareConfig(StrictModel):
    baseline: str = "control"
    alpha: float = Field(0.05, gt=0, lt=1)
    all_pairs: bool = False
    rope: float | None = Field(None, gt=0)  # region of practical equivalence, in each metric's units


class StudySpec(StrictModel):
    """A whole study: data, model, training defaults, strategies and how to search them."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    data: DataConfig = DataConfig()
    model: str = "simple_cnn"
    training: dict[str, Any] = {}
    strategies: dict[str, str | dict[str, Any]]
    search: SearchConfig = SearchConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    resources: ResourcesConfig = ResourcesConfig()
    tracking: TrackingConfig = TrackingConfig()
    ray: RayConfig = RayConfig()
    failure: FailureSpec = FailureSpec()
    repeats: RepeatsConfig = RepeatsConfig()
    compare: CompareConfig = CompareConfig()
    storage_path: str = "results"
    storage_shared: bool = False  # storage_path is one shared mount on every node (NFS, a volume)

    @field_validator("strategies")
    @classmethod
    def _strategies(cls, v: dict) -> dict:
        if not v:
            raise ValueError("name at least one strategy")
        for name, value in v.items():
            if isinstance(value, str) and value not in PRESETS:
                raise ValueError(f"{name}: {PRESETS.unknown(value)}")
        return v

    @field_validator("training")
    @classmethod
    def _training_keys(cls, v: dict) -> dict:
        allowed = set(TrialConfig.model_fields) - NOT_TRAINING
        for key in v:
            if key not in allowed:
                raise ValueError(f"{key}: not a training setting (allowed: {', '.join(sorted(allowed))})")
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> StudySpec:
        if self.compare.baseline not in self.strategies:
            raise ValueError(f"compare.baseline: {self.compare.baseline!r} is not one of the strategies "
                             f"({', '.join(self.strategies)})")
        unknown = set(self.search.strategy_space) - set(self.strategies)
        if unknown:
            raise ValueError(f"search.strategy_space names strategies not in strategies: {sorted(unknown)}")
        for name in self.strategies:
            self.check_trial_config(name)
        for name in self.strategies:
            evaluation = parse_config(self.base_config(name)).evaluation
            for field, metrics in (("search.metric", [self.search.metric]), ("search.objectives", self.search.objectives),
                                   ("repeats.metrics", self.repeats.metrics)):
                for m in metrics:
                    try:
                        check_operating_point(field, m, evaluation)
                    except ValueError as exc:
                        raise ValueError(f"{exc} in strategy {name}; add it under training.evaluation") from None
        if any(m.startswith("test_tta") for m in self.repeats.metrics):
            plain = [s for s in self.strategies if "tta" not in self.space(s)
                     and not parse_config(self.base_config(s)).tta]
            if plain:
                raise ValueError(f"repeats.metrics: test_tta/ metrics need tta > 0 in every strategy; "
                                 f"{', '.join(plain)} evaluate without TTA")
        if self.repeats.search_seeds is not None:
            seeds = self.repeats.search_seeds
            if len(set(seeds)) < len(seeds):
                raise ValueError(f"repeats.search_seeds: {seeds} repeats a seed; each search seed is one search")
            if self.search.seed not in seeds:
                raise ValueError(f"repeats.search_seeds: {seeds} must include search.seed ({self.search.seed}), "
                                 "the study's first search")
        if self.search.objectives and self.scheduler.type == "asha":
            if "scheduler" in self.model_fields_set:
                raise ValueError("scheduler.type: ASHA stops trials on one metric; a multi-objective "
                                 "search (search.objectives) needs type fifo")
            self.scheduler = SchedulerConfig(type="fifo")
        if self.scheduler.type == "asha" and self.scheduler.grace_period > self.epochs:
            raise ValueError(f"scheduler.grace_period ({self.scheduler.grace_period}) exceeds the "
                             f"epochs ({self.epochs})")
        return self

    @property
    def epochs(self) -> int:
        return int(self.training.get("epochs", TrialConfig.model_fields["epochs"].default))

    @property
    def experiment(self) -> str:
        return self.tracking.experiment or self.name

    @property
    def repeat_seeds(self) -> list[int]:
        """The repeat phase's paired seeds."""
        return list(range(self.repeats.first_seed, self.repeats.first_seed + self.repeats.seeds))

    @property
    def search_seeds(self) -> list[int]:
        """The seeds of the study's searches: ``repeats.search_seeds``, by default ``[search.seed]``."""
        return list(self.repeats.search_seeds or [self.search.seed])

    def search_phase(self, search_seed: int) -> str:
        """The phase name of one search (MLflow's ``phase`` tag, its Tune experiments' folder, its
        Optuna studies): ``search`` for ``search.seed``, ``search-seed<k>`` for the others."""
        return "search" if search_seed == self.search.seed else f"search-seed{search_seed}"

    def with_search_seed(self, search_seed: int) -> StudySpec:
        """This spec searched with ``search_seed``: the Optuna sampler's and the search trials' seed."""
        return self.model_copy(update={"search": self.search.model_copy(update={"seed": search_seed})})

    def knobs(self, strategy: str) -> dict[str, Any]:
        value = self.strategies[strategy]
        return copy.deepcopy(PRESETS.get(value) if isinstance(value, str) else value)

    def space(self, strategy: str) -> dict[str, Distribution]:
        """The shared space plus this strategy's additions (dotted keys, e.g. ``vabal.exponent``)."""
        return {**self.search.space, **self.search.strategy_space.get(strategy, {})}

    def check_searchable(self) -> None:
        """:class:`SpecError` when a strategy has nothing to search (Optuna needs a space; a spec
        without one is fine for the phases after the search)."""
        empty = [s for s in self.strategies if not self.space(s)]
        if empty:
            raise SpecError(f"search.space: nothing to search for {', '.join(empty)}; give at least one value "
                            "(a choice of one value searches a fixed config: lr: {choice: [0.001]})")

    def base_config(self, strategy: str, seed: int | None = None) -> dict[str, Any]:
        """The trial config without searched values: data, model, training, the strategy's knobs."""
        config = deep_merge({"data": self.data.model_dump(mode="json", exclude_none=True),
                             "model": self.model, **copy.deepcopy(self.training)}, self.knobs(strategy))
        config.setdefault("num_threads", max(1, int(self.resources.cpu)))
        _absolute_paths(config)  # trials run in their own working directories (Ray's trial folders)
        if seed is not None:
            config["seed"] = seed
        return config

    def check_trial_config(self, strategy: str) -> None:
        """Validate the trial config a strategy's trials will get, naming the spec path at fault."""
        space = self.space(strategy)
        origin = {k: "training" for k in self.training}
        origin |= {k: f"strategies.{strategy}" for k in self.knobs(strategy)}
        for key in space:
            where = "search.space" if key in self.search.space else f"search.strategy_space.{strategy}"
            origin[key.split(".")[0]] = where
        first = {k: d.examples()[0] for k, d in space.items()}
        variants = [first] + [{**first, k: v} for k, d in space.items() for v in d.examples()[1:]]
        for values in variants:
            config = self.base_config(strategy)
            for key, value in values.items():
                set_dotted(config, key, value)
            try:
                parse_config(config)
            except ConfigError as exc:
                lines = []
                for line in str(exc).split("; "):
                    prefix = origin.get(line.split(":")[0].split(".")[0])
                    lines.append(f"{prefix}.{line}" if prefix else line)
                raise ValueError("; ".join(lines)) from None


def _absolute_paths(config: dict) -> None:
    """Relative file paths of a trial config, resolved against the driver's working directory."""
    for node, key in ((config.get("data", {}), "path"), (config.get("data", {}), "cache_dir"),
                      (config, "init_path")):
        if node.get(key) is not None and "://" not in str(node[key]):
            node[key] = str(Path(node[key]).expanduser().resolve())


def flat(node: Any, prefix: str = "") -> dict[str, Any]:
    """A nested mapping as ``{"training.lr": 0.001, ...}`` (lists are leaves)."""
    if not isinstance(node, dict):
        return {prefix: node}
    out: dict[str, Any] = {}
    for k, v in node.items():
        out |= flat(v, f"{prefix}.{k}" if prefix else str(k))
    return out


def changed_fields(old: dict, new: dict) -> dict[str, tuple[Any, Any]]:
    """Dotted spec keys whose values differ between two spec dumps: key -> (old, new)."""
    a, b = flat(old), flat(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def set_dotted(config: dict, key: str, value: Any) -> None:
    """``set_dotted(c, "vabal.exponent", 2)`` sets ``c["vabal"]["exponent"] = 2``."""
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML keeps the last silently:
    two ``control:`` lines under ``strategies`` would make the second the baseline)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is given twice (lines {seen[key]} and {line}); keep one",
                key_node.start_mark)
        seen[key] = line
    return loader.construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def read_yaml(text: str, where: str) -> Any:
    """YAML text to Python (safe types, no duplicate keys); :class:`SpecError` naming ``where`` and
    the line and column at fault."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{where}: not valid YAML{at}: {problem}") from None


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` items (dotted spec keys, values parsed as YAML) as a nested dict; one
    :class:`SpecError` naming the item at fault."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise SpecError(f"--set {item!r}: expected KEY=VALUE, e.g. --set training.epochs=3")
        top = key.split(".")[0]
        if top not in StudySpec.model_fields:
            hint = (f"; a training setting goes under training: --set training.{key}={text}"
                    if top in TrialConfig.model_fields and top not in NOT_TRAINING else "")
            raise SpecError(f"--set {item!r}: {top!r} is not a spec key (spec keys: "
                            f"{', '.join(StudySpec.model_fields)}){hint}")
        set_dotted(out, key, read_yaml(text, f"--set {item!r}"))
    return out


def load_spec(path: str | Path, overrides: dict[str, Any] | None = None) -> StudySpec:
    """Read and validate a YAML spec, then with ``overrides`` (``--set``) merged in; one
    :class:`SpecError` naming the file (or ``--set``) and each YAML path at fault."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: spec file does not exist")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SpecError(f"{path}: line {line}, column {column}: byte 0x{data[exc.start]:02x} is not UTF-8 "
                        "text; save the spec as UTF-8") from None
    raw = read_yaml(text, str(path))
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: expected a mapping at the top level")
    spec = _validated(expand_env(raw), str(path))
    if not overrides:
        return spec
    return _validated(expand_env(deep_merge(raw, overrides)), "--set")


def _validated(raw: dict, where: str) -> StudySpec:
    try:
        return StudySpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(f"{where}: {format_validation_error(exc)}") from None


_ENV = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def expand_env(node: Any, path: str = "") -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in string values; an unset variable without a
    default is an error naming the YAML path."""
    if isinstance(node, dict):
        return {k: expand_env(v, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [expand_env(v, f"{path}.{i}") for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def value(m: re.Match) -> str:
        if m.group(1) in os.environ:
            return os.environ[m.group(1)]
        if m.group(2) is not None:
            return m.group(2)
        raise SpecError(f"{path}: environment variable {m.group(1)} is not set")

    return _ENV.sub(value, node)


def trial_config(spec: StudySpec, strategy: str, seed: int = 0,
                 overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """A validated trial config: the spec's data, model and training, one strategy, one seed."""
    if strategy not in spec.strategies:
        raise SpecError(f"strategies: no strategy {strategy!r} in the spec "
                        f"(has {', '.join(spec.strategies)})")
    return parse_config(deep_merge(spec.base_config(strategy, seed), overrides or {})).model_dump(mode="json")
