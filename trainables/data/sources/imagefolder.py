"""``imagefolder``: one sub-folder per class; its image files are read at any depth below it
(sub-folders included), except hidden and OS-made files and folders."""
from __future__ import annotations

from ...errors import DataError
from ..config import SOURCES
from .base import FileTable, Source, image_files, is_os_file


@SOURCES.register("imagefolder")
class ImageFolderSource(Source):
    """One sub-folder per class. No patient information: each image is its own patient."""

    def scan(self) -> FileTable:
        root = self._root()
        classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not is_os_file(d.name))
        if len(classes) < 2:
            raise DataError(f"data.path: {root} needs one sub-folder per class (found {len(classes)})")
        table = FileTable(class_names=classes)
        for c in classes:
            files, ignored = image_files(root / c)
            if not files:
                raise DataError(f"data.path: class folder {root / c} has no images")
            table.paths += files
            table.labels += [c] * len(files)
            table.patient_ids += [f"{c}/{p.relative_to(root / c)}" for p in files]
            table.os_files += ignored
        return table
