"""Operating points on hand-built probabilities: the threshold each rule fixes on validation, the
test metrics at it, the tie rule, undefined cases; the config's rules and names; threshold moving."""
import math
import warnings

import numpy as np
import pytest

from trainables.config import parse_config
from trainables.errors import ConfigError
from trainables.metric_names import metric_name
from trainables.metrics import binary_metrics, choose_threshold, decide, operating_point_metrics
from trainables.operating_points import NOTHING_POSITIVE, rule_name

# validation: 4 positives (0.9, 0.8, 0.6, 0.3) and 6 negatives (0.7, 0.5, 0.4, 0.2, 0.1, 0.05)
VAL_POS = np.array([True, True, True, True, False, False, False, False, False, False])
VAL_SCORE = np.array([0.9, 0.8, 0.6, 0.3, 0.7, 0.5, 0.4, 0.2, 0.1, 0.05])


@pytest.mark.parametrize("rule, threshold", [
    # Youden's J at each candidate: 0.9 -> 1/4, 0.8 -> 2/4, 0.7 -> 2/4 - 1/6, 0.6 -> 3/4 - 1/6 (the
    # maximum, 7/12), 0.5 -> 3/4 - 2/6, 0.4 -> 3/4 - 3/6, 0.3 -> 1 - 3/6
    ("youden", 0.6),
    ({"sensitivity": 0.75}, 0.6),   # 3 of 4 positives at >= 0.6
    ({"sensitivity": 0.9}, 0.3),    # all 4 needed
    ({"specificity": 5 / 6}, 0.6),  # one negative (0.7) above: the lowest threshold keeping 5/6 is 0.6
    ({"specificity": 1.0}, 0.8),    # no negative above 0.7
    ({"threshold": 0.45}, 0.45),
])
def test_each_rule_fixes_the_threshold_computed_by_hand(rule, threshold):
    assert choose_threshold(rule, VAL_POS, VAL_SCORE) == pytest.approx(threshold)


def test_youden_ties_go_to_the_highest_threshold():
    # J: 0.9 -> 1/2 - 0, 0.7 -> 1/2 - 1/2, 0.5 -> 1 - 1/2 (ties 0.9), 0.1 -> 0
    pos, score = np.array([True, True, False, False]), np.array([0.9, 0.5, 0.7, 0.1])
    assert choose_threshold("youden", pos, score) == 0.9


def test_test_metrics_at_the_validation_threshold_and_ties_count_as_positive():
    test_pos = np.array([True, True, False, False, False])
    test_score = np.array([0.6, 0.59, 0.6, 0.2, 0.61])  # 0.6 ties the threshold: called positive
    m = binary_metrics(test_pos, test_score, 0.6)
    # called positive: 0.6 (pos), 0.6 (neg), 0.61 (neg); tp 1, fp 2, fn 1, tn 1
    assert m == pytest.approx({"sensitivity": 0.5, "specificity": 1 / 3, "ppv": 1 / 3, "npv": 0.5, "f1": 0.4,
                               "balanced_accuracy": (0.5 + 1 / 3) / 2, "threshold": 0.6})


def test_operating_point_metrics_are_named_per_split_and_point():
    probs = np.stack([VAL_SCORE, 1 - VAL_SCORE], 1)
    labels = np.where(VAL_POS, 0, 1)
    out = operating_point_metrics([{"sensitivity": 0.75}, "youden"], labels, probs, labels, probs, 0, "test")
    assert out["test_at_sens75/threshold"] == pytest.approx(0.6)
    assert out["test_at_sens75/sensitivity"] == 0.75 and out["test_at_youden/specificity"] == pytest.approx(5 / 6)
    assert len(out) == 14


def test_without_validation_positives_the_point_is_nan_and_nothing_warns():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = choose_threshold("youden", np.zeros(5, bool), np.linspace(0, 1, 5))
        m = binary_metrics(np.array([True, False]), np.array([0.9, 0.1]), t)
        # a split without positives at a real threshold: the ratios without denominator are 0
        empty = binary_metrics(np.zeros(3, bool), np.array([0.9, 0.1, 0.2]), 0.5)
    assert math.isnan(t) and all(math.isnan(v) for v in m.values())
    assert empty["sensitivity"] == 0.0 and empty["specificity"] == pytest.approx(2 / 3)
    assert empty["balanced_accuracy"] == pytest.approx(2 / 3)  # the recall of the one class present


def test_a_rule_that_calls_nothing_positive_gets_a_threshold_above_one():
    pos, score = np.array([True, False]), np.array([0.2, 0.9])  # the positive ranks last
    assert choose_threshold({"specificity": 1.0}, pos, score) == NOTHING_POSITIVE > 1.0


def test_decide_moves_only_the_positive_class():
    probs = np.array([[0.3, 0.6, 0.1], [0.1, 0.2, 0.7], [0.2, 0.3, 0.5]])
    assert decide(probs, 0, None).tolist() == [1, 2, 2]
    assert decide(probs, 0, 0.2).tolist() == [0, 2, 0]
    assert decide(probs, 0, math.nan).tolist() == [1, 2, 2]


def test_rules_names_and_errors_name_the_field():
    cfg = parse_config({"evaluation": {"operating_points": ["youden", {"sensitivity": 0.9}, {"specificity": 0.975},
                                                            {"threshold": 0.3}]}})
    assert cfg.evaluation.names == ["youden", "sens90", "spec97.5", "thr0.3"]
    assert rule_name({"sensitivity": 1.0}) == "sens100"
    for bad, message in [
        (["younden"], "evaluation.operating_points: item 0: 'younden' is not a rule"),
        ([{"sensitivity": 1.5}], "item 0: sensitivity must be in (0, 1]"),
        ([{"sensitivity": 0.9, "specificity": 0.9}], "is not a rule"),
        ([{"sensitivity": 0.9}, {"sensitivity": 0.90}], "item 1: {'sensitivity': 0.9} repeats the operating point sens90"),
    ]:
        with pytest.raises(ConfigError, match=re_escape(message)):
            parse_config({"evaluation": {"operating_points": bad}})
    with pytest.raises(ConfigError, match="monitor: val_at_sens90/specificity is taken at operating point 'sens90'"):
        parse_config({"monitor": "val_at_sens90/specificity"})
    assert parse_config({"monitor": "val_at_sens90/specificity",
                         "evaluation": {"operating_points": [{"sensitivity": 0.9}]}}).monitor


def re_escape(text: str) -> str:
    import re
    return re.escape(text)


def test_metric_names_accept_operating_points_where_they_are_reported():
    assert metric_name("test_at_spec95/sensitivity", ("test", "test_tta"))
    assert metric_name("test_tta_at_youden/ppv", ("test", "test_tta"))
    with pytest.raises(ValueError):
        metric_name("test_at_spec95/auroc", ("test",))  # AUROC does not depend on a threshold
    with pytest.raises(ValueError):
        metric_name("val_tta_at_youden/ppv", ("val", "val_tta"))  # not reported per epoch


def test_threshold_moving_is_control_decided_at_youden():
    cfg = parse_config({"strategy": "threshold_moving"})
    control = parse_config({"strategy": "control"})
    assert cfg.evaluation.decision == "youden" and control.evaluation.decision == "argmax"
    assert (cfg.sampler, cfg.loss, cfg.augment) == (control.sampler, control.loss, control.augment)


def test_youden_ties_within_rounding_still_go_to_the_highest_threshold():
    # J = 1/3 at 0.8, 0.5 and 0.35, but 1 - 2/3 rounds above 1/3 in floating point
    pos = np.array([False, False, True, True, True, False])
    score = np.array([0.1, 0.4, 0.35, 0.8, 0.5, 0.5])
    assert choose_threshold("youden", pos, score) == 0.8


def test_small_fixed_thresholds_get_names_a_metric_key_can_hold():
    name = rule_name({"threshold": 1e-05})
    assert name == "thr0.00001"
    assert metric_name(f"test_at_{name}/ppv", ("test",))


def test_a_monitor_minimised_with_mode_max_is_refused():
    with pytest.raises(ConfigError, match="monitor_mode: val/ece is minimised: with monitor_mode max the best model "
                                          "would be the worst epoch's; set monitor_mode: min"):
        parse_config({"monitor": "val/ece"})
    assert parse_config({"monitor": "val/ece", "monitor_mode": "min"}).monitor_mode == "min"
