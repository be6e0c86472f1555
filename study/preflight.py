"""What a spec asks of its data, checked in the driver once the data are loaded and before any Ray
work: the classes it names (positive and normal class, ``recall_<class>`` metrics) exist, and every
split the study will use can be made (each class has patients for train, val and test).

A fault here is one error naming the spec field; found inside the trials, the same fault would fail
every trial and its retries instead.
"""
from __future__ import annotations

from trainables.config import parse_config
from trainables.data import DataConfig, ImageArrays, split_indices
from trainables.errors import ConfigError
from trainables.metric_names import check_class_metric, class_keys, resolve_class

from .spec import StudySpec


def check_data(spec: StudySpec, arrays: ImageArrays) -> None:
    """Raise :class:`ConfigError` (a class the data lack) or ``DataError`` (a split that cannot be
    made), naming the field."""
    try:
        class_keys(arrays.class_names)
    except ValueError as exc:
        raise ConfigError(f"data: {exc}") from None
    configs = {s: parse_config(spec.base_config(s, seed=spec.search.seed)) for s in spec.strategies}
    named = {"search.metric": [spec.search.metric], "search.objectives": spec.search.objectives,
             "repeats.metrics": spec.repeats.metrics}
    for field, metrics in named.items():
        for m in metrics:
            _class_metric(field, m, arrays.class_names)
    splits = set()
    for strategy, cfg in configs.items():
        where = f"strategies.{strategy}" if "data" in spec.knobs(strategy) else "data"
        resolve_class(arrays.class_names, cfg.data.positive_class, f"{where}.positive_class")
        if cfg.cascade:
            resolve_class(arrays.class_names, cfg.data.normal_class, f"{where}.normal_class")
        _class_metric("training.monitor", cfg.monitor, arrays.class_names)
        if cfg.lr_policy == "plateau":
            _class_metric("training.lr_options.metric", cfg.lr_options.metric, arrays.class_names)
        seeds = [cfg.data.split_seed] + (spec.repeat_seeds if spec.repeats.vary_split else [])
        splits |= {(cfg.data.model_dump_json(), seed) for seed in seeds}
    for data, seed in sorted(splits):
        split_indices(arrays, DataConfig.model_validate_json(data), seed)


def _class_metric(field: str, metric: str, class_names: list[str]) -> None:
    try:
        check_class_metric(metric, class_names)
    except ValueError as exc:
        raise ConfigError(f"{field}: {exc}") from None

