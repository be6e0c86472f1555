import warnings

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

from trainables.errors import ConfigError
from trainables.metrics import classification_metrics, resolve_class

NAMES = ["covid", "normal", "pneumonia"]


def onehot(pred, c=3):
    p = np.full((len(pred), c), 0.1)
    p[np.arange(len(pred)), pred] = 0.8
    return p


def test_hand_computed_confusion_matrix():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2])
    pred = np.array([0, 0, 1, 2, 1, 1, 1, 1, 0, 2, 2, 1])
    # rows = truth, cols = prediction
    # covid:     2 1 1 ; normal: 1 4 0 ; pneumonia: 0 1 2
    m = classification_metrics(y, onehot(pred), loss=0.5, class_names=NAMES, positive=0)
    assert m["confusion_matrix"] == [[2, 1, 1], [1, 4, 0], [0, 1, 2]]
    assert m["accuracy"] == pytest.approx(8 / 12)
    assert m["sensitivity"] == pytest.approx(2 / 4)
    assert m["ppv"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(7 / 8)  # 8 non-covid, 1 called covid
    assert m["recall_normal"] == pytest.approx(4 / 5)
    assert m["recall_pneumonia"] == pytest.approx(2 / 3)
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["loss"] == 0.5
    assert 0 < m["pr_auc"] <= 1


def test_class_never_predicted_gives_zero_ppv_without_warnings():
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([1, 1, 1, 1, 2, 2])  # covid never predicted
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = classification_metrics(y, onehot(pred), 0.0, NAMES, positive=0)
    assert m["ppv"] == 0.0 and m["sensitivity"] == 0.0
    assert m["specificity"] == 1.0


def test_split_without_positives_reports_zero_without_warnings():
    y = np.array([1, 1, 2, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = classification_metrics(y, onehot(np.array([1, 1, 2, 0])), 0.0, NAMES, positive=0)
    assert m["sensitivity"] == 0.0 and m["pr_auc"] == 0.0
    assert m["balanced_accuracy"] == pytest.approx(0.75)  # mean recall of the present classes


def test_pr_auc_is_one_when_positives_rank_first():
    y = np.array([0, 1, 2, 0])
    probs = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.3, 0.1, 0.6], [0.8, 0.1, 0.1]])
    assert classification_metrics(y, probs, 0.0, NAMES, 0)["pr_auc"] == pytest.approx(1.0)


def test_positive_class_resolution():
    assert resolve_class(["COVID-19", "normal", "pneumonia"], "covid") == 0
    assert resolve_class(NAMES, "pneumonia") == 2
    with pytest.raises(ConfigError, match="data.positive_class: 'tb' is not one of the classes"):
        resolve_class(NAMES, "tb")


def test_auroc_mcc_npv_f1_brier_ece_by_hand():
    # positive = covid (0); 6 samples, two covid
    y = np.array([0, 0, 1, 1, 2, 2])
    probs = np.array([[0.7, 0.2, 0.1],   # covid, confident, right
                      [0.3, 0.6, 0.1],   # covid ranked below one normal, called normal
                      [0.4, 0.5, 0.1],   # normal
                      [0.1, 0.8, 0.1],
                      [0.2, 0.2, 0.6],
                      [0.1, 0.3, 0.6]])
    m = classification_metrics(y, probs, 0.9, NAMES, positive=0)
    # covid scores 0.7, 0.3 vs negatives 0.4, 0.1, 0.2, 0.1: pairs won 4 + 3 of 8
    assert m["auroc"] == pytest.approx(7 / 8)
    # decisions: covid, normal, normal, normal, pneumonia, pneumonia; tp 1, fp 0, fn 1, tn 4
    assert m["npv"] == pytest.approx(4 / 5) and m["f1"] == pytest.approx(2 / 3)
    assert m["mcc"] == pytest.approx((1 * 4 - 0 * 1) / np.sqrt(1 * 2 * 4 * 5))
    onehot_truth = np.eye(3)[y]
    assert m["brier"] == pytest.approx(((probs - onehot_truth) ** 2).sum(1).mean())
    # ECE: confidences 0.7 0.6 0.5 0.8 0.6 0.6 with correct 1 0 0 1 1 1; 15 bins of width 1/15
    # bins: 0.7 -> 10, 0.6 -> 8 (three: 0, 1, 1), 0.5 -> 7, 0.8 -> 11
    expected = (abs(1 - 0.7) + abs(2 - 1.8) + abs(0 - 0.5) + abs(1 - 0.8)) / 6
    assert m["ece"] == pytest.approx(expected)
    assert m["log_loss"] == m["loss"] == 0.9
    per_class = [roc_auc_score(y == c, probs[:, c]) for c in range(3)]
    assert m["macro_auroc"] == pytest.approx(np.mean(per_class))


def test_undefined_ranking_metrics_are_nan_and_decision_ratios_zero_without_warnings():
    y = np.array([1, 1, 2, 2])  # no covid in the split
    probs = onehot(np.array([1, 1, 2, 0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = classification_metrics(y, probs, 0.0, NAMES, positive=0)
        only_one = classification_metrics(np.array([1, 1]), onehot(np.array([1, 2])), 0.0, NAMES, positive=0)
    # macro over the classes present: normal vs rest 1, pneumonia vs rest (0.8 and 0.1 against 0.1, 0.1) 3/4
    assert np.isnan(m["auroc"]) and m["macro_auroc"] == pytest.approx((1 + 0.75) / 2)
    assert m["mcc"] == 0.0 and m["f1"] == 0.0 and m["npv"] == 1.0
    assert np.isnan(only_one["auroc"]) and np.isnan(only_one["macro_auroc"])
    assert only_one["npv"] == 1.0 and only_one["ece"] >= 0


def test_a_decision_threshold_moves_every_decision_metric():
    y = np.array([0, 0, 1, 2])
    probs = np.array([[0.45, 0.5, 0.05], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.3, 0.1, 0.6]])
    argmax = classification_metrics(y, probs, 0.0, NAMES, 0)
    moved = classification_metrics(y, probs, 0.0, NAMES, 0, threshold=0.2)
    assert argmax["sensitivity"] == 0.0
    # covid where p >= 0.2 (ties positive): samples 0, 1 and 3; sample 3 was pneumonia by argmax
    assert moved["sensitivity"] == 1.0 and moved["ppv"] == pytest.approx(2 / 3)
    assert moved["confusion_matrix"] == [[2, 0, 0], [0, 1, 0], [1, 0, 0]]
    assert moved["auroc"] == argmax["auroc"]  # ranking metrics do not depend on the decision
