"""Decode once: prepared arrays cached on disk as ``.npy`` + a JSON manifest.

The key hashes the source name, the config values that change the arrays, and every source file's
path, size and mtime, so a changed, added or removed file invalidates the entry.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from .arrays import ImageArrays

ARRAYS = ("images", "labels", "patient_ids", "predefined_split")


def default_cache_dir() -> Path:
    return Path(os.environ.get("CXR_STUDY_CACHE", Path.home() / ".cache" / "cxr-study")) / "data"


def cache_key(source: str, params: dict, file_stats: list[tuple[str, int, int]]) -> str:
    blob = json.dumps({"source": source, "params": params, "files": file_stats}, sort_keys=True,
                      default=str)
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
    Returns the manifest as written."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    try:
        for name in ARRAYS:
            value = getattr(arrays, name)
            if value is not None:
                np.save(tmp / f"{name}.npy", value, allow_pickle=False)
        manifest = {**manifest, "class_names": arrays.class_names, "created": time.time(),
                    "shape": list(arrays.images.shape),
                    "class_counts": arrays.class_counts().tolist()}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
        try:
            os.rename(tmp, folder)
        except OSError:  # another process stored the same entry first
            pass
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest
