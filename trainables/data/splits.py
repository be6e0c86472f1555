"""Train/val/test splits by patient: no patient appears in two splits.

A data set's own split (``ImageArrays.predefined_split``) is kept when ``data.split`` is ``auto`` or
``predefined``; otherwise, and for sets without one, patients are dealt out per class
(:func:`split_by_patient`). ``data.val_from_train`` carves the validation split out of the
training patients of an official split.
"""
from __future__ import annotations

import numpy as np

from ..errors import DataError
from .arrays import SPLITS, ImageArrays
from .config import DataConfig


def split_indices(arrays: ImageArrays, data: DataConfig, seed: int | None = None) -> dict[str, np.ndarray]:
    """Indices per split under ``data.split`` (``seed`` defaults to ``data.split_seed``).

    Raises :class:`DataError` when ``split: predefined`` meets a data set without its own split, a
    patient is in two official splits, or a class has no patient in the training or test split.
    """
    seed = data.split_seed if seed is None else seed
    own = arrays.predefined_split
    if data.split == "predefined" and own is None:
        raise DataError(f"data.split: predefined, but source {data.source!r} at {data.path} has no split "
                        "of its own (split folders, split-named metadata files, a table split column or "
                        "table.split_files); use split: random")
    if own is None or data.split == "random":
        return split_by_patient(arrays, data.val_fraction, data.test_fraction, seed)
    _check_official(arrays, own)
    split = own.copy()
    _check_classes(arrays, split, "test")
    if data.val_from_train is not None or not (own == 1).any():
        train = np.flatnonzero(split != 2)
        split[train] = 0  # an official validation split is replaced, its images train
        fraction = data.val_from_train or data.val_fraction
        split[train[_carve(arrays, train, fraction, seed)]] = 1
    for s in ("train", "val"):
        _check_classes(arrays, split, s)
    return {s: np.flatnonzero(split == i) for i, s in enumerate(SPLITS)}


def _check_classes(arrays: ImageArrays, split: np.ndarray, name: str) -> None:
    counts = arrays.class_counts(np.flatnonzero(split == SPLITS.index(name)))
    missing = [c for c, n in zip(arrays.class_names, counts) if n == 0]
    if missing:
        raise DataError(f"data: the {name} split has no image of class(es) {missing}; "
                        f"{'set data.val_from_train, or ' if name == 'val' else ''}use split: random")


def _check_official(arrays: ImageArrays, split: np.ndarray) -> None:
    pairs = np.unique(np.stack([arrays.patient_ids.astype(str), split.astype(str)]), axis=1)
    patients, counts = np.unique(pairs[0], return_counts=True)
    twice = patients[counts > 1]
    if len(twice):
        where = {SPLITS[int(s)] for p, s in pairs.T if p == twice[0]}
        raise DataError(f"data: {len(twice)} patient(s) are in two official splits (a leak), e.g. patient "
                        f"{str(twice[0])!r} in {sorted(where)}; fix the split lists or the patient ids "
                        "(data.patient_regex), or use split: random")


def _carve(arrays: ImageArrays, train: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Positions in ``train`` of the patients dealt to validation: ``fraction`` of each class's
    training patients (by their majority label; at least one, leaving one), shuffled with ``seed``."""
    rng = np.random.default_rng(seed)
    patients, inverse = np.unique(arrays.patient_ids[train], return_inverse=True)
    label = _patient_labels(inverse, arrays.labels[train], len(patients), arrays.num_classes)
    chosen = np.zeros(len(patients), bool)
    for c in range(arrays.num_classes):
        members = rng.permutation(np.flatnonzero(label == c))
        if len(members) >= 2:
            chosen[members[:min(max(1, round(len(members) * fraction)), len(members) - 1)]] = True
    return np.flatnonzero(chosen[inverse])


def _patient_labels(inverse: np.ndarray, labels: np.ndarray, n_patients: int, n_classes: int) -> np.ndarray:
    votes = np.zeros((n_patients, n_classes), np.int64)
    np.add.at(votes, (inverse, labels), 1)
    return votes.argmax(1)


def split_by_patient(arrays: ImageArrays, val_fraction: float, test_fraction: float,
                     seed: int) -> dict[str, np.ndarray]:
    """Indices per split. Patients are grouped by their (majority) label and, per label, shuffled
    with ``seed`` and dealt out so each split gets its fraction of that label's patients
    (at least one). Raises :class:`DataError` for a class with fewer than 3 patients."""
    rng = np.random.default_rng(seed)
    patients, inverse = np.unique(arrays.patient_ids, return_inverse=True)
    patient_label = _patient_labels(inverse, arrays.labels, len(patients), arrays.num_classes)
    assignment = np.empty(len(patients), np.int64)
    for c, name in enumerate(arrays.class_names):
        members = rng.permutation(np.flatnonzero(patient_label == c))
        k = len(members)
        if k < 3:
            raise DataError(f"data: class {name!r} has {k} patient(s); a train/val/test split "
                            "needs at least 3")
        n_val = min(max(1, round(k * val_fraction)), k - 2)
        n_test = min(max(1, round(k * test_fraction)), k - 1 - n_val)
        assignment[members[:n_val]] = 1
        assignment[members[n_val:n_val + n_test]] = 2
        assignment[members[n_val + n_test:]] = 0
    per_image = assignment[inverse]
    return {s: np.flatnonzero(per_image == i) for i, s in enumerate(SPLITS)}
