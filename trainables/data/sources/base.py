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
import re
import warnings
from abc import ABC, abstractmethod
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError
from ..arrays import SPLITS, ImageArrays
from ..config import DataConfig
from ..decode import IMAGE_SUFFIXES, is_dicom
from ..prepare import compact, open_images, prepare

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
            if _is_image(f, parent):
                if is_os_file(f):
                    ignored += 1
                else:
                    found.append(Path(parent, f))
    return sorted(found), ignored


def _is_image(name: str, parent: str | Path | None = None) -> bool:
    """An image suffix, or (given its folder) no suffix and the DICOM magic (RSNA-style names)."""
    suffix = Path(name).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return True
    if parent is None or suffix:
        return False
    try:
        with open(Path(parent, name), "rb") as f:
            return is_dicom(f.read(132))
    except OSError:
        return False


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
    OS-made (``os_files``); each row's official split (``splits``: train/val/test, None when the
    data set has none); whether the patient ids are the data set's (``patients_known``: false when
    each image stands for its own patient); rows a source's rules left out, counted per rule (``dropped``), and notes
    on what was skipped (``notes``)."""

    paths: list[Path] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    patient_ids: list[str] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)
    label_files: list[Path] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)
    os_files: int = 0
    splits: list[str] | None = None
    patients_known: bool = True
    dropped: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def named_per_class(self) -> Counter:
        """Rows named per class: those found and those missing."""
        return Counter(self.labels) + Counter(label for label, _ in self.missing)

    def key_parts(self) -> dict[str, Any]:
        """Everything of the table that changes the arrays: every file's path, size and mtime, the
        label files' too, and each row's label and patient id."""
        return {"files": [file_stat(p) for p in self.paths],
                "label_files": [file_stat(p) for p in self.label_files],
                "labels": self.labels, "patients": self.patient_ids, "classes": self.class_names,
                **({"splits": self.splits} if self.splits is not None else {})}


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
        return {**self.cfg.decoding(), "strict": self.cfg.strict,
                **({"patient_regex": self.cfg.patient_regex} if self.cfg.patient_regex else {})}

    @abstractmethod
    def scan(self) -> FileTable:
        """List the files the source will read (cheap: no decoding)."""

    def build(self, table: FileTable, work: Path) -> ImageArrays:
        """Decode the table's files into ``work`` (:func:`prepare`, resumable); the images of the
        returned arrays are mapped read-only from ``work/images.npy``."""
        totals = table.named_per_class()
        done = prepare(table.paths, self.cfg.load_size, self.cfg.channels, work, self.cfg.equalize)
        bad = [(lab, f"{p} ({e})") for p, lab, e in zip(table.paths, table.labels, done.errors) if e]
        drop_rows(bad, totals, self.cfg.strict, f"data.path: cannot read {len(bad)} image file(s)",
                  f"data.path: skipped {len(bad)} unreadable image(s)")
        kept = np.array([e is None for e in done.errors], bool)
        if not kept.all():
            compact(work, kept)
        index = {c: i for i, c in enumerate(table.class_names)}
        labels = np.array([index[lab] for lab in table.labels], np.int64)[kept]
        patients = np.array(table.patient_ids)[kept]
        files = [str(p) for p, k in zip(table.paths, kept) if k]
        digests = [d for d, k in zip(done.digests, kept) if k]
        notes = table.notes + [n for n in (_copies_note(files, digests, patients),) if n]
        for note in notes:
            warnings.warn(note, stacklevel=2)
        dropped = {"missing": dict(Counter(lab for lab, _ in table.missing)),
                   "unreadable": dict(Counter(lab for lab, _ in bad)), **table.dropped}
        split = None
        if table.splits is not None:
            split = np.array([SPLITS.index(s) for s in table.splits], np.int64)[kept]
        return ImageArrays(open_images(work), labels, table.class_names, patients, split, manifest={
            "files": files, "digests": digests, "skipped": len(bad), "dropped": dropped,
            "os_files_ignored": table.os_files, "bit_depth": done.depth, "warnings": notes})

    def patient_of(self, path: Path, root: Path, default: str) -> str:
        """The patient id of ``path``: ``data.patient_regex`` searched in the file name, else in the
        path below ``root`` (group 1 when the pattern has a group, else the whole match); without a
        pattern, ``default``. Raises :class:`DataError` naming a file the pattern does not match."""
        pattern = self.cfg.patient_regex
        if pattern is None:
            return default
        rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
        for text in (path.name, rel):
            m = re.search(pattern, text)
            if m:
                return m.group(1) if m.re.groups else m.group(0)
        raise DataError(f"data.patient_regex: {pattern!r} matches neither the name nor the path of {rel}")

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
