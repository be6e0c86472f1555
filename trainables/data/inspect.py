"""What a data config resolves to, before anything is decoded (``study data inspect``): the files
found and missing, the rows each rule left out, class counts and patients per split, the sizes and
modes of a sample of files, and the cache entry a study would use."""
from __future__ import annotations

import warnings
from collections import Counter
from typing import Any

import numpy as np
from PIL import Image

from ..metric_names import resolve_class
from . import cache
from .arrays import SPLITS, ImageArrays
from .config import SOURCES, DataConfig
from .decode import is_dicom
from .splits import split_indices


def describe(cfg: DataConfig, sample: int = 12) -> dict[str, Any]:
    """The data ``cfg`` names, as a dict (see the module docstring); raises what loading would
    raise for the same config (:class:`DataError` naming the field, file or line)."""
    source = SOURCES.get(cfg.source)(cfg)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = source.scan()
    key = cache.cache_key(cfg.source, source.params(), table.key_parts())
    folder = (cfg.cache_dir or cache.default_cache_dir()) / f"{cfg.source}-{key[:20]}"
    out: dict[str, Any] = {
        "source": cfg.source, "preset": cfg.preset, "path": str(cfg.path),
        "label_files": [str(p) for p in table.label_files],
        "files_found": len(table.paths), "files_missing": len(table.missing),
        "missing_examples": [where for _, where in table.missing[:3]],
        "os_files_ignored": table.os_files, "dropped": dict(table.dropped),
        "notes": table.notes + [str(w.message) for w in caught],
        "cache": {"folder": str(folder), "exists": (folder / "manifest.json").is_file()},
    }
    if not table.labels:  # generated (synthetic) or a single array file (medmnist): nothing to list
        return out
    labels = np.array([table.class_names.index(c) for c in table.labels], np.int64)
    arrays = ImageArrays(np.broadcast_to(np.zeros((1, 1, 1, 1), np.uint8), (len(labels), 1, 1, 1)), labels,
                         table.class_names, np.array(table.patient_ids),
                         None if table.splits is None else np.array([SPLITS.index(s) for s in table.splits]))
    index = split_indices(arrays, cfg)
    out["split"] = ("official" if arrays.predefined_split is not None and cfg.split != "random"
                    else "by patient, at random")
    out["classes"] = table.class_names
    out["positive_class"] = table.class_names[resolve_class(table.class_names, cfg.positive_class)]
    if not table.patients_known and not any("own patient" in n for n in out["notes"]):
        out["notes"].append("each image is its own patient (no patient ids found; if the file names hold "
                            "them, set data.patient_regex)")
    out["splits"] = {s: {"images": int(len(idx)), "patients": int(len(np.unique(arrays.patient_ids[idx]))),
                         "per_class": dict(zip(table.class_names, arrays.class_counts(idx).tolist()))}
                     for s, idx in index.items()}
    picks = np.linspace(0, len(table.paths) - 1, min(sample, len(table.paths))).round().astype(int)
    out["sampled"] = dict(Counter(_header(table.paths[i]) for i in sorted(set(picks.tolist()))))
    return out


def _header(path) -> str:
    """``PNG L 1024x1024``, ``DICOM MONOCHROME1 12-bit 2048x2500``: from the header, not the pixels."""
    with open(path, "rb") as f:
        head = f.read(132)
    try:
        if is_dicom(head):
            import pydicom

            ds = pydicom.dcmread(path, stop_before_pixels=True)
            return (f"DICOM {ds.get('PhotometricInterpretation', '?')} {ds.get('BitsStored', '?')}-bit "
                    f"{ds.get('Columns', '?')}x{ds.get('Rows', '?')}")
        with Image.open(path) as img:
            return f"{img.format} {img.mode} {img.size[0]}x{img.size[1]}"
    except Exception as exc:  # noqa: BLE001  (a sample line, not a verdict: the load reports it per file)
        return f"unreadable ({type(exc).__name__})"
