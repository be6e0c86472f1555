"""``medmnist``: a PneumoniaMNIST-style ``.npz`` with its own train/val/test split."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import DataError
from ..arrays import ImageArrays
from ..config import SOURCES
from ..decode import equalized
from .base import FileTable, Source


def _resize_batch(images: np.ndarray, size: int) -> np.ndarray:
    """Antialiased resize of uint8 [N, C, H, W] square images to ``size``."""
    import torch  # here, so that preparing image files never loads torch
    import torch.nn.functional as F

    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = []
    for chunk in np.array_split(images, max(1, len(images) // 1024)):
        t = torch.from_numpy(chunk).float()
        t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append(t.round_().clamp_(0, 255).to(torch.uint8).numpy())
    return np.concatenate(out)


@SOURCES.register("medmnist")
class MedMnistSource(Source):
    """A PneumoniaMNIST-style ``.npz`` (``{train,val,test}_{images,labels}``) with its own split.

    Reads single-label sets: images uint8 ``(N, H, W)`` or ``(N, H, W, 3)``, labels integer
    ``(N,)`` or ``(N, 1)`` with values ``0..K-1``; anything else (a multi-label set such as
    ChestMNIST's ``(N, 14)``) is one :class:`DataError` saying so.
    """

    def params(self) -> dict:
        return {**super().params(), "class_names": self.cfg.class_names}

    def scan(self) -> FileTable:
        return FileTable(paths=[self._root(folder=False)])

    def build(self, table: FileTable, work: Path) -> ImageArrays:
        path = table.paths[0]
        try:
            npz = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"data.path: cannot read {path} as .npz ({exc})") from None
        images, labels, split = [], [], []
        for s, name in enumerate(("train", "val", "test")):
            for key in (f"{name}_images", f"{name}_labels"):
                if key not in npz:
                    raise DataError(f"data.path: {path} has no array {key!r} (has {sorted(npz.files)})")
            x, y = npz[f"{name}_images"], npz[f"{name}_labels"]
            if x.dtype != np.uint8 or x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[3] != 3):
                raise DataError(f"data.path: {path}: {name}_images must be uint8 (N,H,W) or (N,H,W,3), "
                                f"got {x.dtype} {x.shape}")
            if y.ndim > 2 or (y.ndim == 2 and y.shape[1] != 1):
                raise DataError(f"data.path: {path}: {name}_labels has shape {y.shape}, a multi-label set; "
                                "source medmnist reads single-label sets (labels (N,) or (N, 1))")
            if len(y) != len(x) or not np.issubdtype(y.dtype, np.integer) or (y.size and y.min() < 0):
                raise DataError(f"data.path: {path}: {name}_labels must hold one class index >= 0 per image "
                                f"({len(x)} images), got {y.dtype} {y.shape}")
            x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
            if self.cfg.channels == 1 and x.shape[1] == 3:
                luma = np.tensordot(x.astype(np.float32), np.float32([0.299, 0.587, 0.114]), ([1], [0]))
                x = np.round(luma)[:, None].astype(np.uint8)
            elif self.cfg.channels == 3 and x.shape[1] == 1:
                x = np.repeat(x, 3, axis=1)
            x = _resize_batch(x, self.cfg.load_size)
            images.append(equalized(x) if self.cfg.equalize else x)
            labels.append(y.reshape(-1).astype(np.int64))
            split.append(np.full(len(x), s, np.int64))
        labels_all = np.concatenate(labels)
        n_classes = int(labels_all.max()) + 1
        names = [str(c) for c in range(n_classes)]
        if self.cfg.class_names:
            if len(self.cfg.class_names) != n_classes:
                raise DataError(f"data.class_names: {len(self.cfg.class_names)} names for "
                                f"{n_classes} label values in {path}")
            names = list(self.cfg.class_names)
        ids = np.array([f"{i}" for i in range(len(labels_all))])
        return ImageArrays(np.concatenate(images), labels_all, names, ids,
                           predefined_split=np.concatenate(split))
