"""Data: sources by name, decoded once and cached, split by patient, augmented on the device."""
from __future__ import annotations

import warnings

from ..errors import DataError
from . import (
    cache,
    presets,  # noqa: F401  (registers the data set presets)
    sources,
)
from .arrays import SPLITS, ImageArrays
from .config import SOURCES, DataConfig
from .splits import split_by_patient, split_indices

__all__ = ["SOURCES", "SPLITS", "DataConfig", "ImageArrays", "load_arrays", "split_by_patient",
           "split_indices"]


def load_arrays(cfg: DataConfig) -> ImageArrays:
    """The source's images at ``cfg.load_size``: from the cache, or decoded once and cached.

    The cache key (:func:`cache.cache_key`) holds everything that changes the arrays: the source,
    its settings (load size, channels, strictness, histogram equalisation, ...), every image file's path, size and mtime,
    the label files' too, and every row's label, patient id and official split. The data set's
    warnings (e.g. byte-identical copies under two patients) are repeated on every load, cached or
    not. Preparation streams into the cache folder and resumes (:mod:`trainables.data.prepare`);
    one process prepares an entry while the others wait for it.
    """
    source: sources.Source = SOURCES.get(cfg.source)(cfg)
    table = source.scan()
    key = cache.cache_key(cfg.source, source.params(), table.key_parts())
    folder = (cfg.cache_dir or cache.default_cache_dir()) / f"{cfg.source}-{key[:20]}"
    cached = cache.load(folder)
    if cached is None:
        decode_key = cache.cache_key(cfg.source, cfg.decoding(), {"files": table.key_parts()["files"]})
        work, temporary = cache.work_folder(folder, decode_key)
        with cache.preparing(work, temporary):  # one preparer per entry; the others wait, then read it
            cached = cache.load(folder)
            if cached is None:
                arrays = source.build(table, work)
                if len(arrays.images) == 0:
                    raise DataError(f"data.path: no readable images in {cfg.path}")
                manifest = {"source": cfg.source, "path": str(cfg.path), "key": key, "params": source.params(),
                            **arrays.manifest}
                return cache.store(folder, arrays, manifest, work, temporary)
    for note in cached.manifest.get("warnings", []):
        warnings.warn(note, stacklevel=2)
    return cached
