"""``covidx``: COVIDx metadata text files plus the folder holding their images."""
from __future__ import annotations

import warnings
from pathlib import Path

from ...errors import DataError
from ..config import SOURCES
from .base import FileTable, Source, image_files


@SOURCES.register("covidx")
class CovidxSource(Source):
    """COVIDx metadata files (``patient_id filename label source`` per line) + an image folder.

    ``data.metadata`` lists the text files (default: every ``*.txt`` in ``data.path``); image
    files are found anywhere under ``data.path`` by file name.
    """

    def scan(self) -> FileTable:
        root = self._root()
        metas = [Path(m).expanduser() for m in self.cfg.metadata] or sorted(root.glob("*.txt"))
        if not metas:
            raise DataError(f"data.metadata: no metadata files given and no *.txt in {root}")
        by_name: dict[str, Path] = {}
        for p in image_files(root):
            by_name.setdefault(p.name, p)
        table = FileTable()
        missing = []
        for meta in metas:
            if not meta.is_file():
                raise DataError(f"data.metadata: {meta} does not exist")
            for n, line in enumerate(meta.read_text().splitlines(), 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) < 3:
                    raise DataError(f"data.metadata: {meta}:{n}: expected 'patient_id filename label "
                                    f"[source]', got {line!r}")
                path = by_name.get(parts[1])
                if path is None:
                    missing.append(f"{meta}:{n}: {parts[1]}")
                    continue
                table.paths.append(path)
                table.patient_ids.append(parts[0])
                table.labels.append(parts[2])
        if missing and (self.cfg.strict or not table.paths):
            raise DataError(f"data.path: {len(missing)} file(s) named in the metadata are not under "
                            f"{root}, first {missing[0]}")
        if missing:
            warnings.warn(f"data.path: skipped {len(missing)} metadata entries with no image file, "
                          f"first {missing[0]}", stacklevel=2)
        table.class_names = sorted(set(table.labels))
        if len(table.class_names) < 2:
            raise DataError(f"data.metadata: need at least two labels, found {table.class_names}")
        return table
