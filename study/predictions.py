"""What the compare stage computes from the repeat runs' per-sample test predictions
(:mod:`trainables.predictions`): mean ROC and PR curves over seeds, reliability bins, a patient-level
bootstrap CI of AUROC within one seed, and a 2-D embedding of penultimate features.

Two kinds of spread, not to be confused: the **across-seed** spread (how much AUROC moves when the
training seed changes; the repeats' standard deviation) and the **within-seed** patient bootstrap CI
(how much AUROC of one trained model moves when the test patients are resampled; Efron's bootstrap
with the patient as the unit, so images of one patient stay together).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from trainables.metrics import ECE_BINS, confidence_bins
from trainables.predictions import probabilities

GRID = np.linspace(0.0, 1.0, 101)  # false-positive rates (ROC) and recalls (PR) the curves are read at


@dataclass
class Band:
    """A curve's mean and standard deviation over seeds at ``GRID``, and its per-seed summary
    (AUROC or average precision)."""

    mean: np.ndarray
    std: np.ndarray
    scores: list[float]


def _positive(frame: pd.DataFrame, positive: int) -> tuple[np.ndarray, np.ndarray]:
    return frame.label.to_numpy() == positive, probabilities(frame)[:, positive]


def roc_band(frames: list[pd.DataFrame], positive: int) -> Band:
    """Sensitivity at each false-positive rate of ``GRID`` per seed (linear between the ROC's
    vertices), averaged over the seeds' frames."""
    curves, scores = [], []
    for frame in frames:
        y, s = _positive(frame, positive)
        fpr, tpr, _ = roc_curve(y, s)
        curves.append(np.interp(GRID, fpr, tpr))
        scores.append(float(roc_auc_score(y, s)))
    return Band(np.mean(curves, 0), np.std(curves, 0), scores)


def pr_band(frames: list[pd.DataFrame], positive: int) -> Band:
    """Interpolated precision (the best precision at a recall of at least r) at each recall of
    ``GRID`` per seed, averaged over the seeds' frames; scores are average precisions."""
    curves, scores = [], []
    for frame in frames:
        y, s = _positive(frame, positive)
        precision, recall, _ = precision_recall_curve(y, s)
        curves.append([precision[recall >= r - 1e-12].max() for r in GRID])
        scores.append(float(average_precision_score(y, s)))
    return Band(np.mean(curves, 0), np.std(curves, 0), scores)


def reliability(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Top-class confidence in ``ECE_BINS`` equal-width bins, pooled over the frames: per bin its
    sample count, mean confidence and accuracy (NaN for an empty bin)."""
    probs = np.concatenate([probabilities(f) for f in frames])
    labels = np.concatenate([f.label.to_numpy() for f in frames])
    count, confidence, correct = confidence_bins(labels, probs)
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.DataFrame({"low": np.arange(ECE_BINS) / ECE_BINS, "high": np.arange(1, ECE_BINS + 1) / ECE_BINS,
                             "count": count.astype(int), "confidence": confidence / count, "accuracy": correct / count})


def patient_bootstrap_auroc(y_pos: np.ndarray, score: np.ndarray, patients: np.ndarray, n_boot: int = 2000,
                            seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """AUROC of one model's predictions and its percentile bootstrap CI, resampling **patients** with
    replacement (each drawn patient brings all its images). ``y_pos`` bool ``[N]``, ``score`` float
    ``[N]``, ``patients`` ``[N]``. Each replicate is AUROC with the draw's multiplicities as sample
    weights (the Mann-Whitney statistic, ties counting half), computed for all replicates at once.
    Returns (AUROC, low, high); NaN when the split lacks positives or negatives. Replicates that
    draw no positive or no negative patient are left out (``nanpercentile``)."""
    if y_pos.all() or not y_pos.any():
        return math.nan, math.nan, math.nan
    _, patient = np.unique(patients, return_inverse=True)
    n_patients = patient.max() + 1
    rng = np.random.default_rng(seed)
    values = []
    for start in range(0, n_boot, 250):  # blocks bound the memory: 250 x N weights
        b = min(250, n_boot - start)
        draws = rng.integers(0, n_patients, (b, n_patients)) + n_patients * np.arange(b)[:, None]
        counts = np.bincount(draws.ravel(), minlength=b * n_patients).reshape(b, n_patients)
        values.append(weighted_auroc(counts[:, patient].astype(np.float64), y_pos, score))
    replicates = np.concatenate(values)
    tail = 100 * (1 - level) / 2
    low, high = np.nanpercentile(replicates, [tail, 100 - tail])
    return float(roc_auc_score(y_pos, score)), float(low), float(high)


def weighted_auroc(weights: np.ndarray, y_pos: np.ndarray, score: np.ndarray) -> np.ndarray:
    """AUROC under each row of sample weights float ``[B, N]`` at once (the weighted Mann-Whitney
    statistic, ties counting half; equal to scikit-learn's ``roc_auc_score(..., sample_weight=w)``);
    NaN for a row without positive or negative weight."""
    order = np.argsort(score, kind="stable")
    groups = np.r_[0, np.flatnonzero(np.diff(score[order])) + 1]  # runs of equal scores, ascending
    w = weights[:, order]
    pos = np.add.reduceat(w * y_pos[order], groups, axis=1)
    neg = np.add.reduceat(w * ~y_pos[order], groups, axis=1)
    below = np.cumsum(neg, 1) - neg
    denominator = pos.sum(1) * neg.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (pos * (below + 0.5 * neg)).sum(1) / denominator, np.nan)


def embedding(features: np.ndarray, seed: int = 0, tsne_max: int = 3000) -> tuple[np.ndarray, str]:
    """2-D coordinates of penultimate features float ``[N, D]``: scikit-learn's t-SNE (on the first 50
    principal components) up to ``tsne_max`` points, PCA beyond; returns (coords ``[N, 2]``, method)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = features.astype(np.float64)
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    if len(x) > tsne_max or len(x) < 10:
        return PCA(2, random_state=seed).fit_transform(x), "PCA"
    if min(x.shape) > 50:
        x = PCA(50, random_state=seed).fit_transform(x)
    perplexity = min(30.0, (len(x) - 1) / 3)
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x), "t-SNE"
