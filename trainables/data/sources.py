"""Data sources by name. Each lists what it will read (``scan``, cheap, used for the cache key)
and turns that into :class:`ImageArrays` at the load size (``build``, the expensive part)."""
from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError
from ..registry import Registry
from . import synthetic
from .arrays import ImageArrays
from .decode import IMAGE_SUFFIXES, decode_many

if TYPE_CHECKING:
    from ..config import DataConfig

SOURCES: Registry[type["Source"]] = Registry("data source")


@dataclass
class FileTable:
    """The files a source will decode, with their labels and patient ids."""

    paths: list[Path] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    patient_ids: list[str] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)

    def stats(self) -> list[tuple[str, int, int]]:
        out = []
        for p in self.paths:
            st = p.stat()
            out.append((str(p), st.st_size, st.st_mtime_ns))
        return out


class Source(ABC):
    """Base: sources that decode image files share ``build``."""

    def __init__(self, cfg: DataConfig) -> None:
        self.cfg = cfg

    def params(self) -> dict[str, Any]:
        """Config values (beyond the files) that change the arrays."""
        return {"load_size": self.cfg.load_size, "channels": self.cfg.channels}

    @abstractmethod
    def scan(self) -> FileTable:
        """List the files the source will read (cheap: no decoding)."""

    def build(self, table: FileTable) -> ImageArrays:
        images, kept = decode_many(table.paths, self.cfg.load_size, self.cfg.channels,
                                   self.cfg.strict, "data.path")
        index = {c: i for i, c in enumerate(table.class_names)}
        labels = np.array([index[lab] for lab in table.labels], np.int64)[kept]
        patients = np.array(table.patient_ids)[kept]
        files = [str(p) for p, k in zip(table.paths, kept) if k]
        return ImageArrays(images, labels, table.class_names, patients,
                           manifest={"files": files, "skipped": int((~kept).sum())})

    def _root(self) -> Path:
        if self.cfg.path is None:
            raise DataError(f"data.path: required for source {self.cfg.source!r}")
        root = Path(self.cfg.path).expanduser()
        if not root.exists():
            raise DataError(f"data.path: {root} does not exist")
        return root


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


@SOURCES.register("imagefolder")
class ImageFolderSource(Source):
    """One sub-folder per class. No patient information: each image is its own patient."""

    def scan(self) -> FileTable:
        root = self._root()
        classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if len(classes) < 2:
            raise DataError(f"data.path: {root} needs one sub-folder per class (found {len(classes)})")
        table = FileTable(class_names=classes)
        for c in classes:
            files = _image_files(root / c)
            if not files:
                raise DataError(f"data.path: class folder {root / c} has no images")
            table.paths += files
            table.labels += [c] * len(files)
            table.patient_ids += [f"{c}/{p.relative_to(root / c)}" for p in files]
        return table


@SOURCES.register("covidx")
class CovidxSource(Source):
    """COVIDx metadata files (``patient_id filename label source`` per line) + an image folder.

    ``data.metadata`` lists the text files (default: every ``*.txt`` in ``data.path``); image
    files are found anywhere under ``data.path`` by file name.
    """

    def scan(self) -> FileTable:
        root = self._root()
        metas = [Path(m).expanduser() for m in self.cfg.metadata] or sorted(root.glob("*.txt"))
        if not metas:
            raise DataError(f"data.metadata: no metadata files given and no *.txt in {root}")
        by_name: dict[str, Path] = {}
        for p in _image_files(root):
            by_name.setdefault(p.name, p)
        table = FileTable()
        missing = []
        for meta in metas:
            if not meta.is_file():
                raise DataError(f"data.metadata: {meta} does not exist")
            for n, line in enumerate(meta.read_text().splitlines(), 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) < 3:
                    raise DataError(f"data.metadata: {meta}:{n}: expected 'patient_id filename label "
                                    f"[source]', got {line!r}")
                path = by_name.get(parts[1])
                if path is None:
                    missing.append(f"{meta}:{n}: {parts[1]}")
                    continue
                table.paths.append(path)
                table.patient_ids.append(parts[0])
                table.labels.append(parts[2])
        if missing and (self.cfg.strict or not table.paths):
            raise DataError(f"data.path: {len(missing)} file(s) named in the metadata are not under "
                            f"{root}, first {missing[0]}")
        if missing:
            warnings.warn(f"data.path: skipped {len(missing)} metadata entries with no image file, "
                          f"first {missing[0]}", stacklevel=2)
        table.class_names = sorted(set(table.labels))
        if len(table.class_names) < 2:
            raise DataError(f"data.metadata: need at least two labels, found {table.class_names}")
        return table


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


@SOURCES.register("synthetic")
class SyntheticSource(Source):
    """The built-in generator (:mod:`trainables.data.synthetic`); reads no files."""

    def params(self) -> dict[str, Any]:
        return {**super().params(), **self.cfg.synthetic.model_dump(),
                "version": synthetic.GENERATOR_VERSION}

    def scan(self) -> FileTable:
        return FileTable()

    def build(self, table: FileTable) -> ImageArrays:
        s = self.cfg.synthetic
        arrays = synthetic.generate(s.n, self.cfg.load_size, s.seed, s.difficulty, s.shares,
                                    s.images_per_patient)
        if self.cfg.channels == 3:
            arrays.images = np.repeat(arrays.images, 3, axis=1)
        return arrays
