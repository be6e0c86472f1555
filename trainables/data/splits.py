"""Stratified train/val/test splits by patient: no patient appears in two splits."""
from __future__ import annotations

import numpy as np

from ..errors import DataError
from .arrays import SPLITS, ImageArrays


def split_by_patient(arrays: ImageArrays, val_fraction: float, test_fraction: float,
                     seed: int) -> dict[str, np.ndarray]:
    """Indices per split. Patients are grouped by their (majority) label and, per label, shuffled
    with ``seed`` and dealt out so each split gets its fraction of that label's patients
    (at least one). Sources with a predefined split (MedMNIST) keep it."""
    if arrays.predefined_split is not None:
        return {s: np.flatnonzero(arrays.predefined_split == i) for i, s in enumerate(SPLITS)}
    rng = np.random.default_rng(seed)
    patients, inverse = np.unique(arrays.patient_ids, return_inverse=True)
    votes = np.zeros((len(patients), arrays.num_classes), np.int64)
    np.add.at(votes, (inverse, arrays.labels), 1)
    patient_label = votes.argmax(1)
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
