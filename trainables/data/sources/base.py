"""What every data source shares: the table of files it will read, and the decoding ``build``.

A source lists what it will read (``scan``, cheap, used for the cache key) and turns that into
:class:`ImageArrays` at the load size (``build``, the expensive part). Sources register themselves
by name in :data:`trainables.data.config.SOURCES`.

Nothing is dropped silently: a row whose file is missing or unreadable removes part of its class,
so by default (``data.strict: true``) it is one :class:`DataError` that counts the rows per class;
with ``strict: false`` the rows are left out with one warning that counts them per class, and the
manifest records them (``dropped``). Hidden and OS-made files are never data (:func:`is_os_file`).
"""
from __future__ import annotations

import os
import warnings
from abc import ABC, abstractmethod
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError
from ..arrays import ImageArrays
from ..config import DataConfig
from ..decode import IMAGE_SUFFIXES, Decoded, decode_many, map_high_depth

OS_FILES = {"thumbs.db", "desktop.ini", "__macosx", "$recycle.bin", "system volume information"}


def is_os_file(name: str) -> bool:
    """Whether a file or folder name is hidden or made by an operating system, never data: dot
    names (``.ipynb_checkpoints``, ``.DS_Store``, AppleDouble ``._x.png``), ``__MACOSX``,
    ``Thumbs.db``, ``desktop.ini``."""
    return name.startswith(".") or name.lower() in OS_FILES


def image_files(folder: Path) -> tuple[list[Path], int]:
    """Image files anywhere under ``folder`` (sorted), skipping hidden and OS-made files and
    folders at any depth; also returns how many image-named files were skipped that way."""
    found, ignored = [], 0
    for parent, dirs, files in os.walk(folder):
        ignored += sum(_is_image(f) for d in dirs if is_os_file(d) for f in _all_files(Path(parent, d)))
        dirs[:] = [d for d in dirs if not is_os_file(d)]
        for f in files:
            if _is_image(f):
                if is_os_file(f):
                    ignored += 1
                else:
                    found.append(Path(parent, f))
    return sorted(found), ignored


def _is_image(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def _all_files(folder: Path) -> list[str]:
    return [f for _, _, files in os.walk(folder) for f in files]


def file_stat(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path), st.st_size, st.st_mtime_ns


@dataclass
class FileTable:
    """The files a source will decode, with their labels and patient ids; the label files they
    came from (``label_files``: part of the cache key); rows that name a file not found
    (``missing``: label and where, e.g. ``train.txt:3: x.png``); image files skipped as hidden or
    OS-made (``os_files``)."""

    paths: list[Path] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    patient_ids: list[str] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)
    label_files: list[Path] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)
    os_files: int = 0

    def named_per_class(self) -> Counter:
        """Rows named per class: those found and those missing."""
        return Counter(self.labels) + Counter(label for label, _ in self.missing)

    def key_parts(self) -> dict[str, Any]:
        """Everything of the table that changes the arrays: every file's path, size and mtime, the
        label files' too, and each row's label and patient id."""
        return {"files": [file_stat(p) for p in self.paths],
                "label_files": [file_stat(p) for p in self.label_files],
                "labels": self.labels, "patients": self.patient_ids, "classes": self.class_names}


def per_class(labels: list[str], totals: Counter) -> str:
    """``covid: 6 of 12, normal: 1 of 40`` for the rows dropped per class."""
    counts = Counter(labels)
    return ", ".join(f"{c}: {n} of {totals[c]}" for c, n in sorted(counts.items()))


def drop_rows(rows: list[tuple[str, str]], totals: Counter, strict: bool, error: str, warning: str) -> None:
    """Rows (label, where) a source cannot use. ``strict``: one :class:`DataError` (``error``, then
    the count per class and the first rows); else one warning (``warning``, the same counts)."""
    if not rows:
        return
    first = "; ".join(where for _, where in rows[:3]) + (" ..." if len(rows) > 3 else "")
    counts = per_class([label for label, _ in rows], totals)
    if strict:
        raise DataError(f"{error} ({counts}): {first}; set data.strict: false to train without them")
    warnings.warn(f"{warning} ({counts}): {first}", stacklevel=3)


class Source(ABC):
    """Base: sources that decode image files share ``build``."""

    def __init__(self, cfg: DataConfig) -> None:
        self.cfg = cfg

    def params(self) -> dict[str, Any]:
        """Config values (beyond the files) that change the arrays, labels or the rows kept."""
        return {"load_size": self.cfg.load_size, "channels": self.cfg.channels, "strict": self.cfg.strict}

    @abstractmethod
    def scan(self) -> FileTable:
        """List the files the source will read (cheap: no decoding)."""

    def build(self, table: FileTable) -> ImageArrays:
        totals = table.named_per_class()
        results = decode_many(table.paths, self.cfg.load_size, self.cfg.channels)
        bad = [(lab, f"{p} ({r})") for p, lab, r in zip(table.paths, table.labels, results) if isinstance(r, str)]
        drop_rows(bad, totals, self.cfg.strict, f"data.path: cannot read {len(bad)} image file(s)",
                  f"data.path: skipped {len(bad)} unreadable image(s)")
        kept = np.array([not isinstance(r, str) for r in results], bool)
        decoded: list[Decoded] = [r for r in results if not isinstance(r, str)]
        images, depth = _to_uint8(decoded)
        index = {c: i for i, c in enumerate(table.class_names)}
        labels = np.array([index[lab] for lab in table.labels], np.int64)[kept]
        patients = np.array(table.patient_ids)[kept]
        files = [str(p) for p, k in zip(table.paths, kept) if k]
        digests = [d.digest for d in decoded]
        notes = [n for n in (_copies_note(files, digests, patients),) if n]
        for note in notes:
            warnings.warn(note, stacklevel=2)
        dropped = {"missing": dict(Counter(lab for lab, _ in table.missing)),
                   "unreadable": dict(Counter(lab for lab, _ in bad))}
        stacked = np.stack(images) if images else np.empty((0, self.cfg.channels, self.cfg.load_size,
                                                            self.cfg.load_size), np.uint8)
        return ImageArrays(stacked, labels, table.class_names, patients, manifest={
            "files": files, "digests": digests, "skipped": len(bad), "dropped": dropped,
            "os_files_ignored": table.os_files, "bit_depth": depth, "warnings": notes})

    def _root(self, folder: bool = True) -> Path:
        """``data.path``, which must exist (and be a folder, or a file with ``folder=False``)."""
        if self.cfg.path is None:
            raise DataError(f"data.path: required for source {self.cfg.source!r}")
        root = Path(self.cfg.path).expanduser()
        if not root.exists():
            raise DataError(f"data.path: {root} does not exist")
        if folder and not root.is_dir():
            raise DataError(f"data.path: {root} is a file; source {self.cfg.source!r} reads a folder")
        if not folder and not root.is_file():
            raise DataError(f"data.path: {root} is a folder; source {self.cfg.source!r} reads a file")
        return root


def _to_uint8(decoded: list[Decoded]) -> tuple[list[np.ndarray], dict]:
    """uint8 images, the files deeper than 8 bits mapped with one divisor for the data set."""
    deep = [i for i, d in enumerate(decoded) if d.bits is not None]
    images = [d.image for d in decoded]
    if not deep:
        return images, {"high_depth_files": 0}
    bits = max(decoded[i].bits for i in deep)
    for i, image in zip(deep, map_high_depth([images[i] for i in deep], bits)):
        images[i] = image
    return images, {"high_depth_files": len(deep), "bits": bits, "divisor": 2**bits - 1}


def _copies_note(files: list[str], digests: list[str], patients: np.ndarray) -> str | None:
    """A warning when byte-identical files belong to more than one patient (a copy can land in
    another split than its original)."""
    owners: dict[str, dict[str, str]] = defaultdict(dict)
    for f, d, p in zip(files, digests, patients):
        owners[d].setdefault(str(p), f)
    shared = [list(by_patient.values()) for by_patient in owners.values() if len(by_patient) > 1]
    if not shared:
        return None
    copies = sum(len(group) - 1 for group in shared)
    return (f"data: {copies} image file(s) are byte-identical to a file of another patient "
            f"({len(shared)} group(s), e.g. {shared[0][0]} and {shared[0][1]}): a copy can land in "
            "another split than its original (a leak); remove the copies or give them one patient id")
