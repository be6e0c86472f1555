"""Decode image files of any common mode (8-bit grey, RGB, palette, 16-bit grey) at the load size.

Bit depths: 8-bit files map 0..255 as they are. Files with more than 8 bits per sample (16-bit PNG
or TIFF, 32-bit integer TIFF within 0..65535) are decoded to uint16 and mapped to uint8 with **one
divisor for the whole data set**: ``2^B - 1``, where B is the largest of every such file's PNG
``sBIT`` (its significant bits, when the file says) and its highest used bit. So a set of 12-bit
exports (0..4095 in 16-bit files) spans 0..255, and a file of that set whose values stay low stays
dark instead of being stretched by a divisor of its own (:func:`map_high_depth`).

Each file's bytes are hashed while they are read (BLAKE2b, 128 bits), so byte-identical copies can
be found without reading anything twice.
"""
from __future__ import annotations

import hashlib
import io
import os
import struct
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..progress import progress_bar

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp"}
HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class Decoded:
    """One decoded file: ``image`` uint8 ``[C, size, size]``, or uint16 for a file of more than 8
    bits per sample, whose ``bits`` (sBIT or highest used bit, 9..16) then say how deep it is;
    ``digest`` is the hex BLAKE2b-128 of the file's bytes."""

    image: np.ndarray
    bits: int | None
    digest: str


def png_header(data: bytes) -> tuple[int, int, int | None] | None:
    """A PNG's bit depth, colour type (0 grey, 2 RGB, 3 palette, 4 grey + alpha, 6 RGBA) and
    ``sBIT`` (significant bits of its grey or first colour sample; None without the chunk), read
    from its chunks before the image data; None when ``data`` is not a PNG."""
    if not data.startswith(PNG_SIGNATURE) or len(data) < 33:
        return None
    depth, colour = data[24], data[25]  # IHDR: width, height, bit depth, colour type, ...
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"sBIT" and length >= 1:
            return depth, colour, data[pos + 8]
        if kind in (b"IDAT", b"IEND"):
            break
        pos += 12 + length
    return depth, colour, None


def _resized(img: Image.Image, size: int) -> Image.Image:
    """Shorter side to ``size`` (antialiased bilinear), then the centre square."""
    w, h = img.size
    s = size / min(w, h)
    nw, nh = max(size, round(w * s)), max(size, round(h * s))
    img = img.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=3.0)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def decode(path: str | Path, size: int, channels: int = 1) -> Decoded:
    """Read one file, resize its shorter side to ``size`` (antialiased) and centre-crop square.

    Raises ``OSError``/``ValueError`` for an unreadable file or a mode it cannot map (16-bit colour,
    floating point, integers outside 0..65535).
    """
    data = Path(path).read_bytes()
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    png = png_header(data)
    if png is not None and png[0] == 16 and png[1] != 0:  # Pillow would keep only the high byte
        raise ValueError("16-bit colour PNG is not supported (convert it to 16-bit grey)")
    with Image.open(io.BytesIO(data)) as img:
        if img.format == "JPEG":
            img.draft("L" if channels == 1 else "RGB", (size, size))  # decode at reduced scale
        img.load()
        if img.mode in HIGH_DEPTH_MODES:
            return _high_depth(img, size, channels, png[2] if png else None, digest)
        if img.mode == "F":
            raise ValueError("floating-point images are not supported (convert them to 8- or 16-bit grey)")
        img = _resized(img, size).convert("L" if channels == 1 else "RGB")
        arr = np.asarray(img, dtype=np.uint8)
        return Decoded(arr[None] if channels == 1 else arr.transpose(2, 0, 1), None, digest)


def _high_depth(img: Image.Image, size: int, channels: int, sbit: int | None, digest: str) -> Decoded:
    arr = np.asarray(img, dtype=np.int64)
    low, high = int(arr.min()), int(arr.max())
    if low < 0 or high > 65535:
        raise ValueError(f"integer image values {low}..{high} are outside 0..65535")
    resized = np.asarray(_resized(img.convert("I"), size), dtype=np.int64).clip(0, 65535).astype(np.uint16)
    bits = max(sbit or 0, high.bit_length(), 1)
    image = resized[None] if channels == 1 else np.repeat(resized[None], 3, axis=0)
    return Decoded(image, bits, digest)


def map_high_depth(images: list[np.ndarray], bits: int) -> list[np.ndarray]:
    """uint16 images of one data set to uint8 with the one divisor ``2^bits - 1``
    (``round(v * 255 / (2^bits - 1))``)."""
    top = float(2**bits - 1)
    return [np.clip(np.rint(im.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)
            for im in images]


def _decode_or_error(args: tuple[str, int, int]) -> Decoded | str:
    path, size, channels = args
    try:
        return decode(path, size, channels)
    except UnidentifiedImageError:
        return "UnidentifiedImageError: not an image file Pillow can read"
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return f"{type(exc).__name__}: {exc}"


PROGRESS_FROM = 500  # files: smaller sets decode in a few seconds, without a progress bar


def decode_many(paths: list[Path], size: int, channels: int) -> list[Decoded | str]:
    """Decode ``paths`` in parallel worker processes; an unreadable file gives its error line
    (``"OSError: ..."``) in its place. From ``PROGRESS_FROM`` files on, a progress bar on stderr
    (images/s, ETA; refreshed in place on a terminal, a line every 30 s in a log)."""
    jobs = [(str(p), size, channels) for p in paths]
    workers = min(len(jobs) // 256 + 1, os.cpu_count() or 1)
    bar = progress_bar(desc="decoding images", unit="img", total=len(jobs), disable=len(jobs) < PROGRESS_FROM)
    with bar:
        if workers > 1:
            with ProcessPoolExecutor(workers) as pool:
                return [_step(bar, r) for r in pool.map(_decode_or_error, jobs, chunksize=64)]
        return [_step(bar, _decode_or_error(j)) for j in jobs]


def _step(bar, result: Decoded | str) -> Decoded | str:
    bar.update(1)
    return result
