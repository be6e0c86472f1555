"""Decode once: prepared arrays cached on disk as ``.npy`` + a JSON manifest, mapped read-only.

The key hashes the source name, the settings that change the arrays or the rows kept, and the
source's table (every image and label file's path, size and mtime, every row's label, patient id
and official split), so a changed, added or removed file, a relabelled row or another strictness is
another entry. Preparation writes into a work folder beside the entries (``.prepare-<key>``, keyed
by the files and the decoding settings only, so an interrupted or refused preparation resumes);
a finished one is renamed into its entry. An unwritable cache folder is not an error: the arrays
are prepared in a temporary folder and used from memory, with a note.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .arrays import ImageArrays

ARRAYS = ("images", "labels", "patient_ids", "predefined_split")


def default_cache_dir() -> Path:
    return Path(os.environ.get("CXR_STUDY_CACHE", Path.home() / ".cache" / "cxr-study")) / "data"


def cache_key(source: str, params: dict, table: dict[str, Any]) -> str:
    """SHA-256 of the source name, its settings and its table (:meth:`FileTable.key_parts`)."""
    blob = json.dumps({"source": source, "params": params, "table": table}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def load(folder: Path) -> ImageArrays | None:
    """Read a cache entry (its images mapped read-only, shared with every process on the node that
    maps it), or None when it is absent or incomplete."""
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        return None
    manifest = json.loads(manifest_path.read_text())
    arrays = {name: np.load(folder / f"{name}.npy", allow_pickle=False, mmap_mode="r" if name == "images" else None)
              for name in ARRAYS if (folder / f"{name}.npy").is_file()}
    # a plain read-only view of the map: Ray then ships it zero-copy (one copy per node in its object
    # store, mapped by every trial there) instead of pickling a memmap into each trial
    arrays["images"] = arrays["images"].view(np.ndarray)
    return ImageArrays(arrays["images"], arrays["labels"], manifest["class_names"],
                       arrays["patient_ids"], arrays.get("predefined_split"), manifest)


def work_folder(folder: Path, decode_key: str) -> tuple[Path, bool]:
    """Where to prepare the entry ``folder``: ``.prepare-<decode_key>`` beside it, or (when the cache
    folder is not writable, with a note) a temporary folder; the flag says whether it is temporary."""
    work = folder.parent / f".prepare-{decode_key[:20]}"
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder.parent, prefix=".writable-"):
            pass
        return work, False
    except OSError as exc:
        _not_cached(folder, exc)
        return Path(tempfile.mkdtemp(prefix="cxr-study-prepare-")), True


@contextlib.contextmanager
def preparing(work: Path, temporary: bool) -> Iterator[None]:
    """Hold the lock of a work folder (``.locks/<name>`` beside it; a temporary folder is private and
    needs none), so two processes never prepare one entry at once."""
    if temporary:
        yield
        return
    locks = work.parent / ".locks"
    locks.mkdir(exist_ok=True)
    with open(locks / work.name, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            work.mkdir(parents=True, exist_ok=True)  # renamed into an entry by an earlier holder
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def store(folder: Path, arrays: ImageArrays, manifest: dict, work: Path, temporary: bool) -> ImageArrays:
    """Complete the entry in ``work`` and rename it to ``folder`` (atomic, so concurrent trials never
    see half of one). Returns the arrays as stored (images mapped from the entry), or in memory when
    the entry could not be written."""
    manifest = {**manifest, "class_names": arrays.class_names, "created": time.time(),
                "shape": list(arrays.images.shape), "class_counts": arrays.class_counts().tolist()}
    arrays.manifest = manifest
    if not temporary:
        try:
            return _complete(folder, arrays, manifest, work)
        except OSError as exc:  # e.g. the disk is full
            _not_cached(folder, exc)
    arrays.images = np.array(arrays.images)  # read into memory before the work folder goes
    shutil.rmtree(work, ignore_errors=True)
    return arrays


def _complete(folder: Path, arrays: ImageArrays, manifest: dict, work: Path) -> ImageArrays:
    for name in ARRAYS:
        value = getattr(arrays, name)
        if value is not None and not _is_mapped_from(value, work / f"{name}.npy"):
            np.save(work / f"{name}.npy", value, allow_pickle=False)
    for leftover in ("progress.json", "deep.u16"):
        (work / leftover).unlink(missing_ok=True)
    (work / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
    try:
        os.rename(work, folder)
    except OSError:  # another process stored the same entry first
        shutil.rmtree(work, ignore_errors=True)
    return load(folder) or arrays


def _is_mapped_from(value: np.ndarray, path: Path) -> bool:
    base = value.base if not isinstance(value, np.memmap) else value
    return isinstance(base, np.memmap) and base.filename is not None and Path(base.filename) == path.resolve()


def _not_cached(folder: Path, exc: OSError) -> None:
    warnings.warn(f"data.cache_dir: cannot write the cache in {folder.parent} ({exc.strerror or exc}); the "
                  "data are used without being cached (set data.cache_dir or CXR_STUDY_CACHE to a writable "
                  "folder)", stacklevel=4)
