"""``imagefolder``: one sub-folder per class, image files anywhere below it."""
from __future__ import annotations

from ...errors import DataError
from ..config import SOURCES
from .base import FileTable, Source, image_files


@SOURCES.register("imagefolder")
class ImageFolderSource(Source):
    """One sub-folder per class. No patient information: each image is its own patient."""

    def scan(self) -> FileTable:
        root = self._root()
        classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if len(classes) < 2:
            raise DataError(f"data.path: {root} needs one sub-folder per class (found {len(classes)})")
        table = FileTable(class_names=classes)
        for c in classes:
            files = image_files(root / c)
            if not files:
                raise DataError(f"data.path: class folder {root / c} has no images")
            table.paths += files
            table.labels += [c] * len(files)
            table.patient_ids += [f"{c}/{p.relative_to(root / c)}" for p in files]
        return table
