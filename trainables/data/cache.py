"""Decode once: prepared arrays cached on disk as ``.npy`` + a JSON manifest.

The key hashes the source name, the settings that change the arrays or the rows kept, and the
source's table (every image and label file's path, size and mtime, every row's label and patient
id), so a changed, added or removed file, a relabelled row or another strictness is another entry.
An unwritable cache folder is not an error: the arrays are used without being cached, with a note.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
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
    """Read a cache entry, or None when it is absent or incomplete."""
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        return None
    manifest = json.loads(manifest_path.read_text())
    arrays = {name: np.load(folder / f"{name}.npy", allow_pickle=False)
              for name in ARRAYS if (folder / f"{name}.npy").is_file()}
    return ImageArrays(arrays["images"], arrays["labels"], manifest["class_names"],
                       arrays["patient_ids"], arrays.get("predefined_split"), manifest)


def store(folder: Path, arrays: ImageArrays, manifest: dict) -> dict:
    """Write an entry atomically (temp dir + rename), so concurrent trials never see half of one.
    Returns the manifest as written (or as it would have been, when the folder is not writable)."""
    manifest = {**manifest, "class_names": arrays.class_names, "created": time.time(),
                "shape": list(arrays.images.shape), "class_counts": arrays.class_counts().tolist()}
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    except OSError as exc:
        _not_cached(folder, exc)
        return manifest
    try:
        for name in ARRAYS:
            value = getattr(arrays, name)
            if value is not None:
                np.save(tmp / f"{name}.npy", value, allow_pickle=False)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
        try:
            os.rename(tmp, folder)
        except OSError:  # another process stored the same entry first
            pass
    except OSError as exc:  # e.g. the disk is full
        _not_cached(folder, exc)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _not_cached(folder: Path, exc: OSError) -> None:
    warnings.warn(f"data.cache_dir: cannot write the cache in {folder.parent} ({exc.strerror or exc}); the "
                  "data are used without being cached (set data.cache_dir or CXR_STUDY_CACHE to a writable "
                  "folder)", stacklevel=4)
