"""What every data source shares: the table of files it will read, and the decoding ``build``.

A source lists what it will read (``scan``, cheap, used for the cache key) and turns that into
:class:`ImageArrays` at the load size (``build``, the expensive part). Sources register themselves
by name in :data:`trainables.data.config.SOURCES`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError
from ..arrays import ImageArrays
from ..config import DataConfig
from ..decode import IMAGE_SUFFIXES, decode_many


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


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
