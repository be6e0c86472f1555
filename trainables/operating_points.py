"""Operating points: rules that turn the positive-class probability into a yes/no decision, each
fixed on the validation split of a trial and then applied, unchanged, to its test split.

Rules (``evaluation.operating_points``, and ``evaluation.decision``):

- ``youden``: the threshold that maximises Youden's J = sensitivity + specificity - 1 on validation
  (Youden 1950); among equal J the highest threshold;
- ``{sensitivity: s}``: the highest threshold whose validation sensitivity is at least ``s``;
- ``{specificity: s}``: the lowest threshold whose validation specificity is at least ``s``;
- ``{threshold: t}``: the fixed threshold ``t``.

A sample is called positive when its positive-class probability is **>= the threshold**: samples
tied at the threshold are positive (scikit-learn's ``roc_curve`` convention), so every candidate
threshold is a validation probability. A rule that calls nothing positive gets the threshold
``nextafter(1, 2)``. A rule other than a fixed threshold needs positive and negative validation
samples; without both, its threshold and metrics are NaN (and not logged to MLflow).

Each point reports, as ``test_at_<name>/<metric>`` (and ``val_at_<name>/<metric>`` every epoch, the
threshold fitted on validation and applied to it, e.g. to search on sensitivity at 95% specificity):
sensitivity, specificity, PPV, NPV, F1 (of the positive class), balanced accuracy (mean recall of
the two classes present) and the threshold.
Names: ``youden``, ``sens90`` (``{sensitivity: 0.9}``), ``spec95``, ``spec97.5``, ``thr0.3``.
Ratios without a denominator (PPV when nothing is called positive, ...) are 0, as in
:mod:`trainables.metrics`. MLflow refuses ``@`` in metric keys, hence ``_at_``.

The rules, their names and the config live here (no scikit-learn import, so specs validate fast);
the arithmetic in :mod:`trainables.metrics`.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import field_validator

from .metric_names import operating_point_of
from .registry import StrictModel

RULE_KEYS = {"sensitivity": "sens", "specificity": "spec", "threshold": "thr"}
NOTHING_POSITIVE = float(np.nextafter(1.0, 2.0))
Rule = str | dict[str, float]


def parse_rule(rule: Any, where: str = "") -> Rule:
    """The canonical form of one rule (``"youden"`` or a one-key dict), else ``ValueError`` saying
    what is wrong (after ``where``, e.g. ``item 2``)."""
    at = f"{where}: " if where else ""
    if rule == "youden":
        return "youden"
    if isinstance(rule, dict) and len(rule) == 1:
        (key, value), = rule.items()
        if key in RULE_KEYS and isinstance(value, int | float) and not isinstance(value, bool):
            low_open = key != "threshold"
            if (0 < value <= 1) if low_open else (0 <= value <= 1):
                return {key: float(value)}
            raise ValueError(f"{at}{key} must be in {'(0' if low_open else '[0'}, 1], got {value!r}")
    raise ValueError(f"{at}{rule!r} is not a rule; use youden, {{sensitivity: 0.9}}, "
                     "{specificity: 0.95} or {threshold: 0.5}")


def rule_name(rule: Rule) -> str:
    """``youden``, ``sens90``, ``spec97.5``, ``thr0.3``: the ``<name>`` in ``<split>_at_<name>/``."""
    if rule == "youden":
        return "youden"
    (key, value), = rule.items()
    if key == "threshold":
        return f"thr{np.format_float_positional(value, trim='-')}"
    return f"{RULE_KEYS[key]}{round(100 * value, 6):g}"


def check_operating_point(field: str, metric: str, evaluation: EvaluationConfig) -> None:
    """``ValueError`` naming ``field`` when ``metric`` is taken at an operating point (``*_at_<name>/``)
    that ``evaluation.operating_points`` does not define."""
    point = operating_point_of(metric)
    if point is not None and point not in evaluation.names:
        raise ValueError(f"{field}: {metric} is taken at operating point {point!r}, which "
                         f"evaluation.operating_points does not define (defined: {evaluation.names or 'none'})")


class EvaluationConfig(StrictModel):
    """How a trial is evaluated beyond the argmax metrics.

    ``operating_points``: rules whose test metrics are reported as ``test_at_<name>/*`` (also for the
    best-validation model, ``best/test_at_<name>/*``). ``decision``: ``argmax``, or a rule whose
    threshold (fixed on the validation split of the same model, at every epoch) decides every
    decision metric of every split, confusion matrices included: threshold moving. The validation
    metrics then use a threshold fitted on validation itself. A rule without a threshold (validation
    lacks positives or negatives) falls back to the argmax. ``features``: also store the penultimate
    features of the test split with the predictions (for the report's embedding plot).
    """

    operating_points: list[Rule] = []
    decision: Rule = "argmax"
    features: bool = False

    @field_validator("operating_points", mode="before")
    @classmethod
    def _rules(cls, v: Any) -> list[Rule]:
        if not isinstance(v, list):
            raise ValueError("expected a list of rules, e.g. [youden, {sensitivity: 0.9}]")
        rules = [parse_rule(r, f"item {i}") for i, r in enumerate(v)]
        names = [rule_name(r) for r in rules]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"item {i}: {v[i]!r} repeats the operating point {name}")
        return rules

    @field_validator("decision", mode="before")
    @classmethod
    def _decision(cls, v: Any) -> Rule:
        return "argmax" if v == "argmax" else parse_rule(v)

    @property
    def names(self) -> list[str]:
        return [rule_name(r) for r in self.operating_points]

    @property
    def decision_rule(self) -> Rule | None:
        return None if self.decision == "argmax" else self.decision
