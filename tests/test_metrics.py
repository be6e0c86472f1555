import warnings

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score

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
