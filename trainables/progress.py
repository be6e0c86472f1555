"""Progress bars (tqdm) on stderr: refreshed in place on a terminal; in a log or CI, a plain line at
most every 30 s and at the end (no carriage returns, no bar art)."""
from __future__ import annotations

import io
import sys
from collections.abc import Iterable

from tqdm import tqdm


class _Lines(io.TextIOBase):
    """A text stream that turns tqdm's in-place refreshes (``\\r``) into whole lines."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        for line in text.replace("\r", "\n").split("\n"):
            if line.strip():
                self.stream.write(line.rstrip() + "\n")
        self.stream.flush()
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(items: Iterable | None = None, desc: str = "", unit: str = "it", total: int | None = None,
                 disable: bool = False) -> tqdm:
    """``items`` (or a bar to ``update`` by hand, with ``total``) with a progress bar on stderr."""
    tty = sys.stderr.isatty()
    return tqdm(items, desc=desc, unit=unit, total=total, disable=disable,
                file=sys.stderr if tty else _Lines(sys.stderr), mininterval=0.5 if tty else 30,
                dynamic_ncols=tty, ascii=not tty)
