"""Decode image files of any common mode (8-bit grey, RGB, 16-bit grey, palette) to uint8 arrays."""
from __future__ import annotations

import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp"}


def _to_uint8(img: Image.Image, channels: int) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray((np.clip(arr / peak, 0, 1) * 255 + 0.5).astype(np.uint8), "L")
    img = img.convert("L" if channels == 1 else "RGB")
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def decode(path: str | Path, size: int, channels: int = 1) -> np.ndarray:
    """Read one file, resize its shorter side to ``size`` (antialiased) and centre-crop square.

    Returns uint8 ``[channels, size, size]``. Raises ``OSError``/``ValueError`` for an unreadable file.
    """
    with Image.open(path) as img:
        if img.format == "JPEG":
            img.draft("L" if channels == 1 else "RGB", (size, size))  # decode at reduced scale
        img.load()
        w, h = img.size
        s = size / min(w, h)
        nw, nh = max(size, round(w * s)), max(size, round(h * s))
        if img.mode in ("I;16", "I;16B", "I;16L"):
            img = img.convert("I")
        img = img.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=3.0)
        left, top = (nw - size) // 2, (nh - size) // 2
        img = img.crop((left, top, left + size, top + size))
        return _to_uint8(img, channels)


def _decode_or_error(args: tuple[str, int, int]) -> np.ndarray | str:
    path, size, channels = args
    try:
        return decode(path, size, channels)
    except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        return f"{type(exc).__name__}: {exc}"


def decode_many(paths: list[Path], size: int, channels: int, strict: bool,
                field: str = "data.path") -> tuple[np.ndarray, np.ndarray]:
    """Decode ``paths`` in parallel. Returns (images [M, C, size, size], kept mask [N]).

    An unreadable file is an error naming it when ``strict``, else skipped with one warning
    that counts and lists the skipped files.
    """
    jobs = [(str(p), size, channels) for p in paths]
    workers = min(len(jobs) // 256 + 1, os.cpu_count() or 1)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(_decode_or_error, jobs, chunksize=64))
    else:
        results = [_decode_or_error(j) for j in jobs]
    bad = [(p, r) for p, r in zip(paths, results) if isinstance(r, str)]
    if bad and strict:
        p, why = bad[0]
        raise DataError(f"{field}: cannot read image {p} ({why}); {len(bad)} unreadable file(s) in all")
    if bad:
        listed = "; ".join(f"{p} ({why})" for p, why in bad[:5])
        warnings.warn(f"{field}: skipped {len(bad)} unreadable image(s): {listed}"
                      + (" ..." if len(bad) > 5 else ""), stacklevel=2)
    kept = np.array([not isinstance(r, str) for r in results], bool)
    good = [r for r in results if not isinstance(r, str)]
    images = np.stack(good) if good else np.empty((0, channels, size, size), np.uint8)
    return images, kept
