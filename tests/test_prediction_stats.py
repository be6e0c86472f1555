"""The compare stage's analyses of stored predictions: the vectorised weighted AUROC equals
scikit-learn's; the patient bootstrap keeps a patient's images together; the mean curves and the
reliability bins on hand-built cases; the predictions file round-trips."""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from study.predictions import (
    GRID,
    embedding,
    patient_bootstrap_auroc,
    pr_band,
    reliability,
    roc_band,
    weighted_auroc,
)
from trainables.predictions import prediction_frame, probabilities, read_predictions, write_predictions

NAMES = ["covid", "normal", "pneumonia"]


def frame(y, p_covid, patients=None, features=None):
    y = np.asarray(y)
    probs = np.stack([p_covid, (1 - p_covid) / 2, (1 - p_covid) / 2], 1)
    patients = np.arange(len(y)).astype(str) if patients is None else patients
    return prediction_frame("final", np.arange(len(y)), y, probs, NAMES, patients, None, features)


def test_weighted_auroc_equals_sklearn_row_by_row_with_ties():
    rng = np.random.default_rng(1)
    y = rng.random(80) < 0.3
    score = np.round(rng.random(80) + 0.4 * y, 1)  # rounded: many ties
    weights = rng.integers(0, 4, (50, 80)).astype(float)
    expected = [roc_auc_score(y, score, sample_weight=w) for w in weights]
    assert weighted_auroc(weights, y, score) == pytest.approx(expected)
    no_negative = np.where(y, 1.0, 0.0)[None]
    assert np.isnan(weighted_auroc(no_negative, y, score)).all()


def test_the_patient_bootstrap_resamples_patients_not_images():
    rng = np.random.default_rng(2)
    y = rng.random(40) < 0.4
    score = rng.random(40) + 0.5 * y
    auroc, low, high = patient_bootstrap_auroc(y, score, np.arange(40).astype(str), seed=0)
    assert auroc == pytest.approx(roc_auc_score(y, score)) and low < auroc < high
    # every image four times, the copies of one image from one patient: the same AUROC, and the CI of
    # the patients (40 units) matches the one above, where images treated as units would narrow it
    y4, s4, p4 = np.repeat(y, 4), np.repeat(score, 4), np.repeat(np.arange(40), 4).astype(str)
    same = patient_bootstrap_auroc(y4, s4, p4, seed=0)
    as_images = patient_bootstrap_auroc(y4, s4, np.arange(160).astype(str), seed=0)
    assert same[0] == pytest.approx(auroc)
    assert same[2] - same[1] == pytest.approx(high - low, rel=0.25)
    assert as_images[2] - as_images[1] < 0.7 * (same[2] - same[1])
    assert all(np.isnan(patient_bootstrap_auroc(np.zeros(5, bool), np.arange(5.0), np.arange(5))))


def test_mean_roc_and_pr_of_a_perfect_and_a_useless_ranking():
    perfect = frame([0, 0, 1, 2], np.array([0.9, 0.8, 0.2, 0.1]))
    reversed_ = frame([0, 0, 1, 2], np.array([0.1, 0.2, 0.8, 0.9]))
    roc = roc_band([perfect, reversed_], positive=0)
    assert roc.scores == [1.0, 0.0]
    assert roc.mean[GRID == 0.5] == pytest.approx(0.5)  # the mean of sensitivity 1 and 0 at FPR 0.5
    pr = pr_band([perfect], positive=0)
    assert pr.scores == [1.0] and pr.mean == pytest.approx(np.ones_like(GRID))


def test_reliability_bins_pool_the_seeds():
    a = frame([0, 1], np.array([0.9, 0.9]))  # covid at 0.9 twice: one right, one wrong
    table = reliability([a, a])
    row = table[table["count"] > 0]
    assert len(row) == 1 and row["count"].iloc[0] == 4
    assert row["confidence"].iloc[0] == pytest.approx(0.9) and row["accuracy"].iloc[0] == 0.5
    assert row["low"].iloc[0] == pytest.approx(13 / 15)  # 0.9 lies in (13/15, 14/15]


def test_a_predictions_file_round_trips(tmp_path):
    features = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)
    written = frame([0, 1, 2, 0, 1, 2], np.linspace(0.1, 0.9, 6), np.array(list("aabbcc")), features)
    path = write_predictions([written], tmp_path)
    back = read_predictions(path)
    assert back.columns.tolist() == ["model", "index", "patient", "label", "prob_covid", "prob_normal",
                                     "prob_pneumonia", "features"]
    assert back.patient.tolist() == list("aabbcc") and back.label.tolist() == [0, 1, 2, 0, 1, 2]
    assert probabilities(back)[:, 0] == pytest.approx(np.linspace(0.1, 0.9, 6), abs=1e-6)
    assert np.stack(back.features.to_numpy()) == pytest.approx(features)
    assert path.stat().st_size < 20_000
    coords, method = embedding(np.stack(back.features.to_numpy()))
    assert coords.shape == (6, 2) and method == "PCA"  # too few points for t-SNE
