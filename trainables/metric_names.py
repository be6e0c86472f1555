"""Names of the metrics a trial reports, and of classes: checked without computing anything (no
scikit-learn import), so specs validate fast."""
from __future__ import annotations

import re

from .errors import ConfigError

METRIC_NAMES = ("loss", "log_loss", "accuracy", "balanced_accuracy", "macro_f1", "sensitivity", "ppv",
                "specificity", "npv", "f1", "mcc", "pr_auc", "auroc", "macro_auroc", "brier", "ece")
# Metrics where lower is better; every other metric is maximised.
LOWER_IS_BETTER = frozenset({"loss", "log_loss", "brier", "ece"})
# What each operating point reports, under ``<split>_at_<point>/`` (:mod:`trainables.operating_points`).
OPERATING_POINT_METRICS = ("sensitivity", "specificity", "ppv", "npv", "f1", "balanced_accuracy", "threshold")
_AT = re.compile(r"^(?P<split>\w+?)_at_(?P<point>[A-Za-z0-9.]+)$")


def metric_name(v: str, splits: tuple[str, ...] = ("val",)) -> str:
    """``v`` if it is a ``<split>/<metric>`` name the loop reports for one of ``splits``, else
    ``ValueError``. ``recall_<class>`` is checked against the data's classes when they are known
    (:func:`check_class_metric`); an operating point's ``<split>_at_<point>/<metric>`` against the
    trial's ``evaluation.operating_points`` (:func:`operating_point_of`)."""
    split, _, name = v.partition("/")
    at = _AT.match(split)
    if at and at["split"] in splits and at["split"] != "val_tta" and name in OPERATING_POINT_METRICS:
        return v
    if split not in splits or not (name in METRIC_NAMES or name.startswith("recall_")):
        raise ValueError(f"expected {splits[0]}/<metric> with metric in {', '.join(METRIC_NAMES)} or "
                         f"recall_<class>, or {splits[0]}_at_<operating point>/<metric> with metric in "
                         f"{', '.join(OPERATING_POINT_METRICS)}; got {v!r}")
    return v


def operating_point_of(v: str) -> str | None:
    """The operating point a metric name is taken at (``test_at_sens90/ppv`` -> ``sens90``), or None."""
    at = _AT.match(v.partition("/")[0])
    return at["point"] if at else None


def lower_is_better(metric: str) -> bool:
    """Whether ``metric`` (``<split>/<name>``, possibly under ``best/``) is minimised: the losses,
    the Brier score and the expected calibration error."""
    return metric.rpartition("/")[2] in LOWER_IS_BETTER


_NOT_IN_KEY = re.compile(r"[^A-Za-z0-9_.\- ]")


def class_key(name: str) -> str:
    """A class name as it appears in metric names (``recall_<key>``): every character MLflow refuses
    in a metric key, and ``/`` (which would read as a split), becomes ``_``:
    ``pneumonia (viral)`` -> ``pneumonia _viral_``."""
    return _NOT_IN_KEY.sub("_", name)


def class_keys(class_names: list[str]) -> list[str]:
    """:func:`class_key` of every class; ``ValueError`` when two classes map to one key."""
    keys = [class_key(c) for c in class_names]
    for i, k in enumerate(keys):
        if k in keys[:i]:
            raise ValueError(f"classes {class_names[keys.index(k)]!r} and {class_names[i]!r} give one metric name "
                             f"recall_{k}; rename one of them")
    return keys


def check_class_metric(v: str, class_names: list[str]) -> None:
    """``ValueError`` when ``v`` is ``<split>/recall_<key>`` for no class of the data."""
    name = v.partition("/")[2]
    keys = class_keys(class_names)
    if name.startswith("recall_") and name.removeprefix("recall_") not in keys:
        raise ValueError(f"{v!r} names no class of the data: recall_ takes one of {', '.join(keys)}")


def resolve_class(class_names: list[str], name: str, field: str = "data.positive_class") -> int:
    """Index of ``name`` in ``class_names``: exact, else case/punctuation-insensitive prefix
    (``covid`` matches ``COVID-19``), else a :class:`ConfigError` listing the classes."""
    if name in class_names:
        return class_names.index(name)

    def norm(s: str) -> str:
        return re.sub(r"[^a-z0-9]", "", s.lower())

    hits = [i for i, c in enumerate(class_names) if norm(c).startswith(norm(name))]
    if len(hits) == 1:
        return hits[0]
    raise ConfigError(f"{field}: {name!r} is not one of the classes {class_names}")
