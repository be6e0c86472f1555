"""Decode image files of any common mode (8-bit grey, RGB, palette, 16-bit grey) at the load size.

Bit depths: 8-bit files map 0..255 as they are. Files with more than 8 bits per sample (16-bit PNG
or TIFF, 32-bit integer TIFF within 0..65535) are decoded to uint16 and mapped to uint8 with **one
divisor for the whole data set**: ``2^B - 1``, where B is the largest of every such file's PNG
``sBIT`` (its significant bits, when the file says) and its highest used bit. So a set of 12-bit
exports (0..4095 in 16-bit files) spans 0..255, and a file of that set whose values stay low stays
dark instead of being stretched by a divisor of its own (:func:`map_high_depth`).

DICOM files (``.dcm``, or any file with the ``DICM`` magic at byte 128) decode through pydicom
(JPEG-compressed transfer syntaxes through pylibjpeg) and are mapped to uint8 on their own, as the
standard's display pipeline does (:func:`dicom_pixels`).

With ``equalize``, every decoded 8-bit image (and every deep one, once mapped to 8 bits) is
histogram-equalised at the load size, each channel on its own (:func:`equalized`; report 002).

Each file's bytes are hashed while they are read (SHA-256 cut to 128 bits: twice as fast as BLAKE2b
on CPUs with SHA instructions), so byte-identical copies can be found without reading anything twice.
"""
from __future__ import annotations

import hashlib
import io
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".dcm", ".dicom"}
HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DICOM_MAGIC = (128, b"DICM")


def is_dicom(data: bytes) -> bool:
    """Whether ``data`` (at least the first 132 bytes of a file) is a DICOM Part 10 file."""
    at, magic = DICOM_MAGIC
    return data[at:at + len(magic)] == magic


@dataclass
class Decoded:
    """One decoded file: ``image`` uint8 ``[C, size, size]``, or uint16 for a file of more than 8
    bits per sample, whose ``bits`` (sBIT or highest used bit, 9..16) then say how deep it is;
    ``digest`` is the hex SHA-256 of the file's bytes, cut to 128 bits."""

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


def decode(path: str | Path, size: int, channels: int = 1, equalize: bool = False) -> Decoded:
    """Read one file, resize its shorter side to ``size`` (antialiased) and centre-crop square;
    ``equalize`` histogram-equalises an 8-bit result (a deep one is equalised once it is mapped).

    Raises ``OSError``/``ValueError`` for an unreadable file or a mode it cannot map (16-bit colour,
    floating point, integers outside 0..65535).
    """
    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()[:32]
    if is_dicom(data):
        return _eight_bit(dicom_pixels(data), size, channels, digest, equalize)
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
        return _eight_bit(img, size, channels, digest, equalize)


def _eight_bit(img: Image.Image, size: int, channels: int, digest: str, equalize: bool) -> Decoded:
    img = _resized(img, size).convert("L" if channels == 1 else "RGB")
    arr = np.asarray(ImageOps.equalize(img) if equalize else img, dtype=np.uint8)
    return Decoded(arr[None] if channels == 1 else arr.transpose(2, 0, 1), None, digest)


def equalized(images: np.ndarray) -> np.ndarray:
    """Histogram equalisation of uint8 images ``[..., H, W]`` (one image per leading index, e.g.
    ``[N, C, H, W]``), each channel on its own: Pillow's ``ImageOps.equalize``, as report 002 ran it
    (a constant image stays as it is). Returns a new uint8 array of the same shape."""
    flat = images.reshape(-1, *images.shape[-2:])
    out = np.stack([np.asarray(ImageOps.equalize(Image.fromarray(np.ascontiguousarray(im), "L"))) for im in flat])
    return out.reshape(images.shape)


def dicom_pixels(data: bytes) -> Image.Image:
    """A DICOM radiograph as it is displayed: 8-bit grey (mode ``L``) or 8-bit RGB.

    Greyscale (DICOM PS3.3 C.11, PS3.4 N.2): the modality LUT or rescale slope/intercept, then the
    VOI LUT, else the window centre/width (pydicom's ``apply_voi_lut``), mapped from its output
    range to 0..255: the LUT's nominal depth, or the range of the stored bits (``BitsStored``,
    through the rescale) -- never the image's own minimum and maximum, so a dark film stays dark.
    MONOCHROME1 is inverted, so bone is bright in every file. Colour (RGB, YBR_*, PALETTE COLOR)
    is converted to 8-bit RGB.

    Raises ``ValueError`` for objects without pixel data (a report, a presentation state),
    multi-frame objects, and compressed pixel data without an installed decoder.
    """
    import pydicom
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    ds = pydicom.dcmread(io.BytesIO(data))
    if "PixelData" not in ds:
        raise ValueError(f"DICOM object without pixel data (SOP class {ds.get('SOPClassUID', 'unknown')}): "
                         "not an image")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ValueError(f"multi-frame DICOM ({frames} frames): a radiograph has one frame")
    try:
        arr = ds.pixel_array
    except (RuntimeError, NotImplementedError) as exc:
        raise ValueError(f"cannot decode the DICOM pixel data ({ds.file_meta.get('TransferSyntaxUID', '?')}): "
                         f"{exc}") from None
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        return Image.fromarray((rgb >> 8 if rgb.dtype == np.uint16 else rgb).astype(np.uint8), "RGB")
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        return Image.fromarray(arr.astype(np.uint8), "RGB")  # pydicom converts YBR_* to RGB
    # The display pipeline is applied once to every possible stored value (a lookup table), then
    # indexed by the pixels: the same numbers as transforming each pixel, several times faster.
    first, last = _stored_values(ds)
    values = apply_modality_lut(np.arange(first, last + 1, dtype=np.int64), ds)
    voi_lut = ds.get("VOILUTSequence")
    window = "WindowCenter" in ds and "WindowWidth" in ds
    low, high = _stored_range(ds, ordered=not window)  # pydicom's window maps onto these ends as they come
    if voi_lut:
        low, high = 0.0, float(2 ** int(voi_lut[0].LUTDescriptor[2]) - 1)
    if voi_lut or window:
        values = apply_voi_lut(values, ds)
    span = high - low if abs(high - low) > 1e-12 else 1e-12
    table = np.clip((np.asarray(values, np.float64) - low) * (255.0 / span), 0.0, 255.0)
    if photometric == "MONOCHROME1":
        table = 255.0 - table
    table = np.rint(table).astype(np.uint8)
    if first == 0 and arr.dtype in (np.uint8, np.uint16):  # every value the dtype holds has an entry
        full = np.full(np.iinfo(arr.dtype).max + 1, table[-1], np.uint8)
        full[:len(table)] = table[:len(full)]
        return Image.fromarray(np.take(full, arr), "L")
    stored = np.clip(arr.astype(np.int32), first, last) - first
    return Image.fromarray(np.take(table, stored), "L")


def _stored_values(ds) -> tuple[int, int]:
    """The first and last value ``BitsStored`` can hold (signed with ``PixelRepresentation`` 1)."""
    bits = int(ds.BitsStored)
    if not 1 <= bits <= 16:
        raise ValueError(f"BitsStored {bits}: greyscale radiographs store 1 to 16 bits")
    if int(ds.get("PixelRepresentation", 0)) == 0:
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def _stored_range(ds, ordered: bool = True) -> tuple[float, float]:
    """The ends of the stored values' range after the modality transform, lowest first
    (``ordered``), or as pydicom's windowing takes them (the first stored value's first, so with a
    negative rescale slope the window's output runs from high to low)."""
    if ds.get("ModalityLUTSequence"):
        return 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    low, high = _stored_values(ds)
    slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
    ends = (low * slope + intercept, high * slope + intercept)
    return (min(ends), max(ends)) if ordered else ends


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
