"""``medmnist``: a PneumoniaMNIST-style ``.npz`` with its own train/val/test split."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import DataError
from ..arrays import ImageArrays
from ..config import SOURCES
from .base import FileTable, Source


def _resize_batch(images: np.ndarray, size: int) -> np.ndarray:
    """Antialiased resize of uint8 [N, C, H, W] square images to ``size``."""
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
    """A PneumoniaMNIST-style ``.npz`` (``{train,val,test}_{images,labels}``) with its own split."""

    def scan(self) -> FileTable:
        path = self._root()
        if not path.is_file():
            raise DataError(f"data.path: {path} is not a .npz file")
        return FileTable(paths=[path])

    def build(self, table: FileTable) -> ImageArrays:
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
            x = npz[f"{name}_images"]
            if x.dtype != np.uint8 or x.ndim not in (3, 4):
                raise DataError(f"data.path: {path}: {name}_images must be uint8 (N,H,W) or (N,H,W,3)")
            x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
            if self.cfg.channels == 1 and x.shape[1] == 3:
                luma = np.tensordot(x.astype(np.float32), np.float32([0.299, 0.587, 0.114]), ([1], [0]))
                x = np.round(luma)[:, None].astype(np.uint8)
            elif self.cfg.channels == 3 and x.shape[1] == 1:
                x = np.repeat(x, 3, axis=1)
            images.append(_resize_batch(x, self.cfg.load_size))
            labels.append(npz[f"{name}_labels"].reshape(-1).astype(np.int64))
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
