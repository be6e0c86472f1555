"""``imagefolder``: one sub-folder per class, its image files read at any depth below it, except
hidden and OS-made files and folders, and segmentation masks (``masks/`` sub-folders, as in the
COVID-19 Radiography Database's ``<class>/images`` and ``<class>/masks``), skipped with a note.

When the top level holds split folders (``train/ val/ test/``, also ``valid``, ``validation``,
``dev``), as the pneumonia set's ``chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/`` does, the
classes are the folders one level below and each file keeps its split (the official split).
"""
from __future__ import annotations

from pathlib import Path

from ...errors import DataError
from ..config import SOURCES, SPLIT_ALIASES
from .base import FileTable, Source, image_files, is_os_file

MASK_FOLDERS = {"masks", "mask"}


def subfolders(folder: Path) -> list[Path]:
    return sorted((d for d in folder.iterdir() if d.is_dir() and not is_os_file(d.name)), key=lambda d: d.name)


@SOURCES.register("imagefolder")
class ImageFolderSource(Source):
    """One sub-folder per class (below split folders, when the top level has them). Each image is
    its own patient unless ``data.patient_regex`` finds the patient in its name or path."""

    def scan(self) -> FileTable:
        root = self._root()
        top = subfolders(root)
        split_dirs = [d for d in top if d.name.lower() in SPLIT_ALIASES]
        if split_dirs and len(split_dirs) == len(top):
            names = [SPLIT_ALIASES[d.name.lower()] for d in split_dirs]
            if len(set(names)) < len(names):
                raise DataError(f"data.path: {root} has two folders for one split: "
                                f"{', '.join(d.name for d in split_dirs)}")
            layout = [(d, split) for d, split in zip(split_dirs, names)]
        elif split_dirs:
            raise DataError(f"data.path: {root} mixes split folders ({', '.join(d.name for d in split_dirs)}) "
                            f"with other folders ({', '.join(d.name for d in top if d not in split_dirs)}); "
                            "keep either class folders or train/val/test folders at the top")
        else:
            layout = [(root, None)]
        classes = sorted({d.name for folder, _ in layout for d in subfolders(folder)})
        if len(classes) < 2:
            raise DataError(f"data.path: {root} needs one sub-folder per class (found {classes})")
        table = FileTable(class_names=classes, splits=[] if split_dirs else None,
                          patients_known=self.cfg.patient_regex is not None)
        masks = 0
        for folder, split in layout:
            for c in classes:
                if not (folder / c).is_dir():
                    continue
                files, ignored = image_files(folder / c)
                kept = [p for p in files if not MASK_FOLDERS & {q.lower() for q in p.relative_to(folder / c).parts[:-1]}]
                masks += len(files) - len(kept)
                if not kept:
                    raise DataError(f"data.path: class folder {folder / c} has no images")
                table.paths += kept
                table.labels += [c] * len(kept)
                table.patient_ids += [self.patient_of(p, root, p.relative_to(root).as_posix()) for p in kept]
                table.os_files += ignored
                if split is not None:
                    table.splits += [split] * len(kept)
        if masks:
            table.notes.append(f"data.path: skipped {masks} file(s) in masks/ folders (segmentation masks, "
                               "not radiographs)")
            table.dropped["masks"] = masks
        return table
