"""Names of the metrics a trial reports, and of classes: checked without computing anything (no
scikit-learn import), so specs validate fast."""
from __future__ import annotations

import re

from .errors import ConfigError

METRIC_NAMES = ("loss", "accuracy", "balanced_accuracy", "macro_f1", "sensitivity", "ppv",
                "specificity", "pr_auc")


def metric_name(v: str, splits: tuple[str, ...] = ("val",)) -> str:
    """``v`` if it is a ``<split>/<metric>`` name the loop reports for one of ``splits``, else
    ``ValueError`` (``recall_<class>`` is checked against the data's classes when they are known:
    :func:`check_class_metric`)."""
    split, _, name = v.partition("/")
    if split not in splits or not (name in METRIC_NAMES or name.startswith("recall_")):
        raise ValueError(f"expected {splits[0]}/<metric> with metric in {', '.join(METRIC_NAMES)} or "
                         f"recall_<class>, got {v!r}")
    return v


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
