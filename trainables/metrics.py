"""Classification metrics per split, computed with scikit-learn.

Ratios that are undefined on a split are reported as 0, without warnings: PPV when the positive
class is never predicted, sensitivity and PR-AUC when the split has no positive sample,
specificity when it has only positives, and ``recall_<class>`` for a class absent from the split.
``<class>`` is the class name with what MLflow refuses in a metric key replaced
(:func:`~trainables.metric_names.class_key`).
Balanced accuracy is the mean recall over the classes present in the split (scikit-learn's
definition); macro F1 averages over every class.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, confusion_matrix, precision_recall_fscore_support

from .metric_names import class_keys, resolve_class

__all__ = ["classification_metrics", "resolve_class"]


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
    for i, key in enumerate(class_keys(class_names)):
        out[f"recall_{key}"] = float(recall[i])
    out["confusion_matrix"] = cm.tolist()
    return out
