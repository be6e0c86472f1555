"""Data: sources by name, decoded once and cached, split by patient, augmented on the device."""
from __future__ import annotations

from ..errors import DataError
from . import cache, sources
from .arrays import SPLITS, ImageArrays
from .config import SOURCES, DataConfig
from .splits import split_by_patient

__all__ = ["SOURCES", "SPLITS", "DataConfig", "ImageArrays", "load_arrays", "split_by_patient"]


def load_arrays(cfg: DataConfig) -> ImageArrays:
    """The source's images at ``cfg.load_size``: from the cache, or decoded once and cached."""
    source: sources.Source = SOURCES.get(cfg.source)(cfg)
    table = source.scan()
    key = cache.cache_key(cfg.source, source.params(), table.stats())
    folder = (cfg.cache_dir or cache.default_cache_dir()) / f"{cfg.source}-{key[:20]}"
    cached = cache.load(folder)
    if cached is not None:
        return cached
    arrays = source.build(table)
    if len(arrays.images) == 0:
        raise DataError(f"data.path: no readable images in {cfg.path}")
    manifest = {"source": cfg.source, "path": str(cfg.path), "key": key, "params": source.params(),
                **arrays.manifest}
    arrays.manifest = cache.store(folder, arrays, manifest)
    return arrays
