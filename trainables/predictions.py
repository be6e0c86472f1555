"""A trial's per-sample test predictions: one Parquet file (zstd) written beside its checkpoint at the
epoch it is tested, which the study stores in the trial's MLflow run (``predictions.parquet``).

One row per test sample and model (``model``: ``final``, the last epoch's, and ``best``, the
best-validation epoch's). Columns: ``model`` (string), ``index`` (int64, the row in the prepared
arrays), ``patient`` (string), ``file`` (string, the image file relative to ``data.path``; only for
sources that read files), ``label`` (int16, index into the classes), ``prob_<class>`` (float32, one
per class, ``<class>`` as in metric names) and, with ``evaluation.features``, ``features`` (list of
float32: the penultimate layer's output for the un-augmented image). A 2,000-image test split with
3 classes takes tens of kB.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .metric_names import class_keys

PREDICTIONS_FILE = "predictions.parquet"


def prediction_frame(model: str, index: np.ndarray, labels: np.ndarray, probs: np.ndarray,
                     class_names: list[str], patients: np.ndarray, files: list[str] | None,
                     features: np.ndarray | None = None) -> pd.DataFrame:
    """The rows of one model's predictions on a split: ``index`` int ``[N]`` (rows of the prepared
    arrays), ``labels`` int ``[N]``, ``probs`` float ``[N, C]``, ``patients`` and ``files`` (or None)
    ``[N]``, ``features`` float ``[N, D]``."""
    frame = pd.DataFrame({"model": model, "index": index.astype(np.int64), "patient": patients.astype(str)})
    if files is not None:
        frame["file"] = files
    frame["label"] = labels.astype(np.int16)
    for c, key in enumerate(class_keys(class_names)):
        frame[f"prob_{key}"] = probs[:, c].astype(np.float32)
    if features is not None:
        frame["features"] = list(features.astype(np.float32))
    return frame


def write_predictions(frames: list[pd.DataFrame], folder: Path) -> Path:
    """The frames as one zstd-compressed Parquet file in ``folder``; returns its path."""
    path = Path(folder) / PREDICTIONS_FILE
    pd.concat(frames, ignore_index=True).to_parquet(path, compression="zstd", index=False)
    return path


def read_predictions(path: str | Path) -> pd.DataFrame:
    """A predictions file as written by :func:`write_predictions`."""
    return pd.read_parquet(path)


def probabilities(frame: pd.DataFrame) -> np.ndarray:
    """The ``prob_*`` columns of a predictions frame as float64 ``[N, C]``, in class order, each row
    divided by its sum (stored as float32, rows sum to 1 only within ~1e-7)."""
    probs = frame[[c for c in frame.columns if c.startswith("prob_")]].to_numpy(np.float64)
    return probs / probs.sum(1, keepdims=True)
