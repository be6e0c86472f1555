"""Classification metrics per split, computed with scikit-learn.

Ratios that are undefined on a split are reported as 0, without warnings: PPV when the positive
class is never predicted, sensitivity and PR-AUC when the split has no positive sample,
specificity when it has only positives, and ``recall_<class>`` for a class absent from the split.
Balanced accuracy is the mean recall over the classes present in the split (scikit-learn's
definition); macro F1 averages over every class.
"""
from __future__ import annotations

import re

import numpy as np
from sklearn.metrics import average_precision_score, confusion_matrix, precision_recall_fscore_support

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


def check_class_metric(v: str, class_names: list[str]) -> None:
    """``ValueError`` when ``v`` is ``<split>/recall_<class>`` for a class the data do not have."""
    name = v.partition("/")[2]
    if name.startswith("recall_") and name.removeprefix("recall_") not in class_names:
        raise ValueError(f"{v!r} names no class of the data: recall_ takes one of {', '.join(class_names)}")


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


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, loss: float,
                           class_names: list[str], positive: int) -> dict[str, float | list]:
    """All metrics of one split from true labels and predicted class probabilities [N, C]."""
    labels = list(range(len(class_names)))
    y_pred = probs.argmax(1)
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    present = support > 0
    fp = cm[:, positive].sum() - cm[positive, positive]
    negatives = len(y_true) - support[positive]
    is_pos = y_true == positive
    out: dict[str, float | list] = {
        "loss": float(loss),
        "accuracy": float(np.trace(cm) / max(1, cm.sum())),
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1.mean()),
        "sensitivity": float(recall[positive]),
        "ppv": float(precision[positive]),
        "specificity": float((negatives - fp) / negatives) if negatives else 0.0,
        "pr_auc": float(average_precision_score(is_pos, probs[:, positive])) if is_pos.any() else 0.0,
    }
    for i, name in enumerate(class_names):
        out[f"recall_{name}"] = float(recall[i])
    out["confusion_matrix"] = cm.tolist()
    return out
