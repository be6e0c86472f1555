"""``synthetic``: the built-in generator of chest-X-ray-like images (the default source)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .. import synthetic
from ..arrays import ImageArrays
from ..config import SOURCES
from ..decode import equalized
from .base import FileTable, Source


@SOURCES.register("synthetic")
class SyntheticSource(Source):
    """The built-in generator (:mod:`trainables.data.synthetic`); reads no files."""

    def params(self) -> dict[str, Any]:
        return {**super().params(), **self.cfg.synthetic.model_dump(),
                "version": synthetic.GENERATOR_VERSION}

    def scan(self) -> FileTable:
        return FileTable()

    def build(self, table: FileTable, work: Path) -> ImageArrays:
        s = self.cfg.synthetic
        arrays = synthetic.generate(s.n, self.cfg.load_size, s.seed, s.difficulty, s.shares,
                                    s.images_per_patient)
        if self.cfg.equalize:
            arrays.images = equalized(arrays.images)
        if self.cfg.channels == 3:
            arrays.images = np.repeat(arrays.images, 3, axis=1)
        return arrays
