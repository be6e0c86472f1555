"""Preparation that scales: image files decoded in parallel worker processes and streamed straight
into an ``.npy`` file, so the memory it takes is the workers' chunks, whatever the number of files.

The work folder holds ``images.npy`` (uint8 ``[N, C, S, S]``, written in file order), ``deep.u16``
(the files deeper than 8 bits, as uint16, until the data set's one divisor is known:
:func:`trainables.data.decode.map_high_depth`) and ``progress.json`` (what is done). It is written
every few seconds, so an interrupted preparation resumes after the prepared prefix instead of
decoding it again. Rows of unreadable files stay in the file until :func:`compact` drops them.
"""
from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np

from ..progress import progress_bar
from .decode import Decoded, decode, equalized, map_high_depth

PROGRESS_FROM = 500  # files: smaller sets decode in a few seconds, without a progress bar
CHUNK = 32  # files per worker task
SAVE_EVERY_S = 5.0  # seconds between progress saves
STATE = "progress.json"
VERSION = 1


@dataclass
class Prepared:
    """Per file, in order: the error line of an unreadable file (else None), the content digest,
    and the bit depth of a file deeper than 8 bits (else None); plus the data set's deep mapping."""

    errors: list[str | None] = field(default_factory=list)
    digests: list[str | None] = field(default_factory=list)
    bits: list[int | None] = field(default_factory=list)
    depth: dict = field(default_factory=dict)


def _decode_or_error(path: str, size: int, channels: int, equalize: bool) -> Decoded | str:
    from PIL import UnidentifiedImageError

    try:
        return decode(path, size, channels, equalize)
    except UnidentifiedImageError:
        return "UnidentifiedImageError: not an image file Pillow can read"
    except Exception as exc:  # noqa: BLE001  (one bad file is that file's error line, never the whole set's)
        return f"{type(exc).__name__}: {exc}"


def _decode_chunk(job: tuple[list[str], int, int, bool]) -> list[Decoded | str]:
    paths, size, channels, equalize = job
    return [_decode_or_error(p, size, channels, equalize) for p in paths]


def prepare(paths: list[Path], size: int, channels: int, work: Path, equalize: bool = False) -> Prepared:
    """Decode ``paths`` at ``size`` into ``work/images.npy``, resuming a prefix already there;
    ``equalize`` histogram-equalises every image (deep ones once mapped to 8 bits).

    Worker processes: one per CPU (fewer for small sets). From ``PROGRESS_FROM`` files on, a
    progress bar on stderr (images/s, ETA). Returns what each file gave; the images are in the file
    (open it with :func:`open_images`).
    """
    work.mkdir(parents=True, exist_ok=True)
    shape = (len(paths), channels, size, size)
    state = _load_state(work, shape)
    done = len(state.errors)
    images = work / "images.npy"
    if done == 0:
        with open(images, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": shape})
            f.truncate(f.tell() + int(np.prod(shape)))
    offset = _data_offset(images)
    row = channels * size * size
    jobs = [([str(p) for p in paths[i:i + CHUNK]], size, channels, equalize) for i in range(done, len(paths), CHUNK)]
    workers = min(len(jobs), os.cpu_count() or 1)
    bar = progress_bar(desc="decoding images", unit="img", total=len(paths), disable=len(paths) < PROGRESS_FROM)
    bar.update(done)
    saved = time.monotonic()
    with bar, open(images, "r+b") as out, open(work / "deep.u16", "ab") as deep:
        out.seek(offset + done * row)
        for results in _run(jobs, workers):
            for r in results:
                if isinstance(r, str):
                    state.errors.append(r)
                    state.digests.append(None)
                    state.bits.append(None)
                    out.seek(row, os.SEEK_CUR)
                    continue
                state.errors.append(None)
                state.digests.append(r.digest)
                state.bits.append(r.bits)
                if r.bits is None:
                    out.write(np.ascontiguousarray(r.image, np.uint8).tobytes())
                else:
                    deep.write(np.ascontiguousarray(r.image, np.uint16).tobytes())
                    out.seek(row, os.SEEK_CUR)
            bar.update(len(results))
            if time.monotonic() - saved >= SAVE_EVERY_S:
                _save_state(work, shape, state, out, deep)
                saved = time.monotonic()
        _save_state(work, shape, state, out, deep)
    state.depth = _map_deep(work, offset, row, state, (channels, size, size) if equalize else None)
    return state


def _run(jobs: list, workers: int) -> Iterator[list[Decoded | str]]:
    """Each job's results in order (what is done is a prefix), at most ``4 * workers`` jobs in
    flight, so finished chunks never pile up in memory."""
    if workers <= 1:
        yield from map(_decode_chunk, jobs)
        return
    todo = iter(jobs)
    with ProcessPoolExecutor(workers) as pool:
        pending = deque(pool.submit(_decode_chunk, j) for j in islice(todo, 4 * workers))
        while pending:
            results = pending.popleft().result()
            for job in islice(todo, 1):
                pending.append(pool.submit(_decode_chunk, job))
            yield results


def _map_deep(work: Path, offset: int, row: int, state: Prepared, equalize: tuple[int, int, int] | None) -> dict:
    """Map the deep files to uint8 with the data set's one divisor, into their rows; ``equalize``
    (the image shape) equalises each once mapped."""
    deep_rows = [i for i, b in enumerate(state.bits) if b is not None]
    if not deep_rows:
        return {"high_depth_files": 0}
    bits = max(b for b in state.bits if b is not None)
    source = np.memmap(work / "deep.u16", np.uint16, "r", shape=(len(deep_rows), row))
    with open(work / "images.npy", "r+b") as out:
        for k, i in enumerate(deep_rows):
            out.seek(offset + i * row)
            image = map_high_depth([source[k]], bits)[0]
            out.write((equalized(image.reshape(equalize)) if equalize else image).tobytes())
    del source
    return {"high_depth_files": len(deep_rows), "bits": bits, "divisor": 2**bits - 1}


def open_images(work: Path) -> np.ndarray:
    """The prepared images, mapped read-only."""
    return np.load(work / "images.npy", mmap_mode="r")


def compact(work: Path, keep: np.ndarray) -> None:
    """Drop the rows not in ``keep`` (bool ``[N]``) from ``work/images.npy``, a chunk at a time."""
    source = open_images(work)
    shape = (int(keep.sum()), *source.shape[1:])
    tmp = work / "kept.npy"
    with open(tmp, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": shape})
        rows = np.flatnonzero(keep)
        for start in range(0, len(rows), 1024):
            f.write(np.ascontiguousarray(source[rows[start:start + 1024]]).tobytes())
    del source
    (work / STATE).unlink(missing_ok=True)  # the rows moved: what was saved no longer describes them
    os.replace(tmp, work / "images.npy")


def _data_offset(path: Path) -> int:
    with open(path, "rb") as f:
        np.lib.format.read_magic(f)
        np.lib.format.read_array_header_1_0(f)
        return f.tell()


def _save_state(work: Path, shape: tuple, state: Prepared, *files) -> None:
    for f in files:
        f.flush()
        os.fsync(f.fileno())
    tmp = work / f"{STATE}.tmp"
    tmp.write_text(json.dumps({"version": VERSION, "shape": list(shape), "errors": state.errors,
                               "digests": state.digests, "bits": state.bits}))
    os.replace(tmp, work / STATE)


def _load_state(work: Path, shape: tuple) -> Prepared:
    """The prefix prepared earlier in ``work`` (empty when there is none or it does not fit)."""
    try:
        saved = json.loads((work / STATE).read_text())
    except (OSError, ValueError):
        saved = None
    images = work / "images.npy"
    if (saved is None or saved.get("version") != VERSION or tuple(saved["shape"]) != shape
            or not images.is_file()):
        (work / "deep.u16").unlink(missing_ok=True)
        return Prepared()
    state = Prepared(saved["errors"], saved["digests"], saved["bits"])
    deep_bytes = sum(b is not None for b in state.bits) * int(np.prod(shape[1:])) * 2
    with open(work / "deep.u16", "ab") as deep:  # a write after the last save is dropped
        deep.truncate(deep_bytes)
    return state
