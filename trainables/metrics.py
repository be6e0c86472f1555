"""Classification metrics per split, computed with scikit-learn.

Decision metrics take the class decisions of :func:`~trainables.operating_points.decide`: the
argmax, or the positive class at a validation-chosen threshold (``evaluation.decision``).
``sensitivity``, ``specificity``, ``ppv``, ``npv``, ``f1`` and ``mcc`` (Matthews correlation) are of
the positive class against the rest; ``balanced_accuracy`` is the mean recall over the classes present
in the split (scikit-learn's definition); ``macro_f1`` averages over every class; ``recall_<class>``
per class (``<class>`` is the class name with what MLflow refuses in a metric key replaced,
:func:`~trainables.metric_names.class_key`).

Ranking and calibration metrics take the probabilities: ``auroc`` (positive class vs rest),
``macro_auroc`` (one-vs-rest AUROC averaged over the classes present), ``pr_auc`` (average precision
of the positive class), ``brier`` (multi-class Brier score: the mean over samples of the squared
distance between the probability vector and the one-hot truth, in [0, 2]), ``ece`` (expected
calibration error of the top-class confidence: 15 equal-width bins over [0, 1], each bin
``(k/15, (k+1)/15]`` with 0 in the first, the bins' ``|accuracy - mean confidence|`` weighted by their
share of samples; Guo et al. 2017), ``log_loss`` (the mean negative log-likelihood, = ``loss``).

Undefined values, without warnings: a ratio without a denominator is **0** (PPV when the positive
class is never predicted, sensitivity and PR-AUC when the split has no positive sample, specificity
when it has only positives, NPV when nothing is called negative, ``recall_<class>`` for a class absent
from the split, MCC when a row or column of the 2x2 table is empty). AUROC is **NaN** when the split
lacks positives or negatives, ``macro_auroc`` when fewer than two classes are present: a 0 or 0.5
would read as a measurement. NaN values are not logged to MLflow.
"""
from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    matthews_corrcoef,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from .metric_names import OPERATING_POINT_METRICS, class_keys, resolve_class
from .operating_points import NOTHING_POSITIVE, Rule, rule_name

__all__ = ["ECE_BINS", "binary_metrics", "calibration_metrics", "confidence_bins", "choose_threshold", "classification_metrics", "decide",
           "operating_point_metrics", "ranking_metrics", "resolve_class"]

ECE_BINS = 15


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, loss: float, class_names: list[str],
                           positive: int, threshold: float | None = None) -> dict[str, float | list]:
    """All metrics of one split from true labels int ``[N]`` and class probabilities float
    ``[N, C]`` (rows sum to 1); ``loss`` is the split's mean negative log-likelihood; ``threshold``
    the positive-class decision threshold (None: argmax)."""
    labels = list(range(len(class_names)))
    y_pred = decide(probs, positive, threshold)
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    present = support > 0
    fp = cm[:, positive].sum() - cm[positive, positive]
    fn = support[positive] - cm[positive, positive]
    negatives = len(y_true) - support[positive]
    called_negative = len(y_true) - cm[:, positive].sum()
    tp = cm[positive, positive]
    margins_filled = min(support[positive], negatives, tp + fp, called_negative) > 0
    out: dict[str, float | list] = {
        "loss": float(loss),
        "log_loss": float(loss),
        "accuracy": float(np.trace(cm) / max(1, cm.sum())),
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1.mean()),
        "sensitivity": float(recall[positive]),
        "ppv": float(precision[positive]),
        "specificity": float((negatives - fp) / negatives) if negatives else 0.0,
        "npv": float((called_negative - fn) / called_negative) if called_negative else 0.0,
        "f1": float(f1[positive]),
        "mcc": float(matthews_corrcoef(y_true == positive, y_pred == positive)) if margins_filled else 0.0,
    }
    out |= ranking_metrics(y_true, probs, positive)
    out |= calibration_metrics(y_true, probs)
    for i, key in enumerate(class_keys(class_names)):
        out[f"recall_{key}"] = float(recall[i])
    out["confusion_matrix"] = cm.tolist()
    return out


def ranking_metrics(y_true: np.ndarray, probs: np.ndarray, positive: int) -> dict[str, float]:
    """``auroc``, ``macro_auroc`` and ``pr_auc`` from labels int ``[N]`` and probabilities ``[N, C]``."""
    is_pos = y_true == positive
    both = is_pos.any() and not is_pos.all()
    per_class = [roc_auc_score(y_true == c, probs[:, c]) for c in np.unique(y_true)] \
        if len(np.unique(y_true)) > 1 else []
    return {"auroc": float(roc_auc_score(is_pos, probs[:, positive])) if both else math.nan,
            "macro_auroc": float(np.mean(per_class)) if per_class else math.nan,
            "pr_auc": float(average_precision_score(is_pos, probs[:, positive])) if is_pos.any() else 0.0}


def confidence_bins(y_true: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-class confidence in :data:`ECE_BINS` equal-width bins ``(k/15, (k+1)/15]`` (0 in the first):
    per bin the sample count, the summed confidence and the number of correct argmax decisions,
    each float ``[ECE_BINS]``."""
    confidence = probs.max(1)
    correct = probs.argmax(1) == y_true
    bins = np.clip(np.ceil(confidence * ECE_BINS).astype(int) - 1, 0, ECE_BINS - 1)
    return (np.bincount(bins, minlength=ECE_BINS).astype(float), np.bincount(bins, confidence, ECE_BINS),
            np.bincount(bins, correct, ECE_BINS))


def calibration_metrics(y_true: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """``brier`` (multi-class, in [0, 2]) and ``ece`` (top-class confidence, :data:`ECE_BINS`
    equal-width bins) from labels int ``[N]`` and probabilities ``[N, C]``."""
    count, confidence_sum, correct_sum = confidence_bins(y_true, probs)
    gap = np.abs(correct_sum - confidence_sum)
    return {"brier": float(brier_score_loss(y_true, probs, labels=list(range(probs.shape[1])),
                                            scale_by_half=False)),
            "ece": float(gap.sum() / max(1, count.sum()))}


def choose_threshold(rule: Rule, y_pos: np.ndarray, score: np.ndarray) -> float:
    """The threshold ``rule`` fixes on validation: ``y_pos`` bool ``[N]`` (is the positive class),
    ``score`` float ``[N]`` (its probability). NaN when the rule needs both classes and a split
    lacks one."""
    if isinstance(rule, dict) and "threshold" in rule:
        return rule["threshold"]
    if y_pos.all() or not y_pos.any():
        return math.nan
    fpr, tpr, thresholds = roc_curve(y_pos, score, drop_intermediate=False)  # thresholds decrease
    if rule == "youden":
        j = tpr - fpr
        i = int(np.flatnonzero(j >= j.max() - 1e-12)[0])  # equal J within rounding: the highest threshold
    elif "sensitivity" in rule:
        i = int(np.argmax(tpr >= rule["sensitivity"] - 1e-12))
    else:
        i = int(np.flatnonzero(fpr <= 1 - rule["specificity"] + 1e-12)[-1])
    return min(float(thresholds[i]), NOTHING_POSITIVE)


def binary_metrics(y_pos: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, float]:
    """The decision ``score >= threshold`` scored against ``y_pos``; every metric NaN for a NaN
    threshold."""
    if math.isnan(threshold):
        return dict.fromkeys(OPERATING_POINT_METRICS, math.nan)
    (tn, fp), (fn, tp) = confusion_matrix(y_pos, score >= threshold, labels=[False, True])

    def ratio(a: int, b: int) -> float:
        return float(a / b) if b else 0.0

    sensitivity, specificity = ratio(tp, tp + fn), ratio(tn, tn + fp)
    recalls = [r for r, n in ((sensitivity, tp + fn), (specificity, tn + fp)) if n]
    return {"sensitivity": sensitivity, "specificity": specificity, "ppv": ratio(tp, tp + fp),
            "npv": ratio(tn, tn + fn), "f1": ratio(2 * tp, 2 * tp + fp + fn),
            "balanced_accuracy": float(np.mean(recalls)) if recalls else 0.0, "threshold": float(threshold)}


def operating_point_metrics(rules: list[Rule], val_labels: np.ndarray, val_probs: np.ndarray,
                            labels: np.ndarray, probs: np.ndarray, positive: int, split: str) -> dict[str, float]:
    """Every rule's threshold fixed on the validation labels/probabilities (int ``[Nv]``, float
    ``[Nv, C]``) and applied to a split's (``[N]``, ``[N, C]``): ``{"<split>_at_<name>/<metric>": value}``."""
    out = {}
    for rule in rules:
        threshold = choose_threshold(rule, val_labels == positive, val_probs[:, positive])
        for k, v in binary_metrics(labels == positive, probs[:, positive], threshold).items():
            out[f"{split}_at_{rule_name(rule)}/{k}"] = v
    return out


def decide(probs: np.ndarray, positive: int, threshold: float | None) -> np.ndarray:
    """Class decisions int ``[N]`` from probabilities ``[N, C]``: the argmax without a threshold;
    with one, the positive class where its probability is >= ``threshold``, else the most probable
    other class (threshold moving, e.g. Buda et al. 2018)."""
    if threshold is None or math.isnan(threshold):
        return probs.argmax(1)
    others = probs.copy()
    others[:, positive] = -np.inf
    return np.where(probs[:, positive] >= threshold, positive, others.argmax(1))
