"""The one in-memory form every data source produces."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SPLITS = ("train", "val", "test")


@dataclass
class ImageArrays:
    """Decoded images pre-resized to the load size, with labels and patient ids.

    ``images`` is uint8 ``[N, C, H, W]`` (from the cache: a read-only view of the entry's mapped
    file); ``labels`` int64 ``[N]`` indexing ``class_names``; ``patient_ids`` a string array
    ``[N]``. ``predefined_split`` (0 train, 1 val, 2 test) is the data set's own split (split
    folders, split-named metadata files, a table's split column or lists, MedMNIST), else None.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    patient_ids: np.ndarray
    predefined_split: np.ndarray | None = None
    manifest: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {self.images.dtype} {self.images.shape}")
        if len(self.labels) != n or len(self.patient_ids) != n:
            raise ValueError("images, labels and patient_ids must have the same length")
        if self.predefined_split is not None and len(self.predefined_split) != n:
            raise ValueError("predefined_split must have one entry per image")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_counts(self, indices: np.ndarray | None = None) -> np.ndarray:
        labels = self.labels if indices is None else self.labels[indices]
        return np.bincount(labels, minlength=self.num_classes)
