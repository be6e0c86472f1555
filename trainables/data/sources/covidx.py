"""``covidx``: COVIDx metadata text files plus the folder holding their images.

A line is ``patient_id filename label [source]``, space separated; patient ids may hold spaces
(``COVID 7 COVID(7).png COVID-19 sirm``), so a line is read from the right: the file name is the
third field from the end when it names an image (then the last two are label and source), else
the second from the end (then the last is the label); everything before it is the patient id.

A file name resolves first inside the metadata file's own split folder (``train.txt`` ->
``<data.path>/train/``, also for ``train_split.txt`` and the like), then anywhere under
``data.path``; a name that still matches several files is an error listing them, and so is a
file named by two rows. When every metadata file is named for a split (``train.txt``, ``val.txt``,
``test.txt``, as COVIDx CXR-3/4 ship them), that is the data set's official split.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from ...errors import DataError
from ..config import SOURCES, SPLIT_ALIASES
from ..decode import IMAGE_SUFFIXES
from .base import FileTable, Source, drop_rows, image_files

SPLIT_NAMES = ("train", "val", "valid", "validation", "test")


def parse_line(line: str) -> tuple[str, str, str] | None:
    """``(patient_id, filename, label)`` of one metadata line, read from the right; None when no
    field in the file-name positions names an image and the line has neither 3 nor 4 fields."""
    parts = line.split()
    for back in (3, 2):  # file name third from the end (with a source) or second (without)
        if len(parts) > back and Path(parts[-back]).suffix.lower() in IMAGE_SUFFIXES:
            return " ".join(parts[:-back]), parts[-back], parts[-back + 1]
    if len(parts) in (3, 4):  # file names without an image suffix: the fixed columns
        return parts[0], parts[1], parts[2]
    return None


def _split_word(meta: Path) -> str | None:
    """The split word a metadata file's name starts with (``valid`` for ``valid-v2.txt``), or None."""
    stem = meta.stem.lower()
    return next((name for name in SPLIT_NAMES
                 if stem == name or stem.startswith((f"{name}_", f"{name}-", f"{name}."))), None)


def split_of(meta: Path) -> str | None:
    """The split a metadata file is named for (``train.txt``, ``test_COVIDx4.txt``, ``val-v2.txt``:
    train, test, val), or None."""
    word = _split_word(meta)
    return None if word is None else SPLIT_ALIASES[word]


def split_folder(root: Path, meta: Path) -> Path | None:
    """The folder of the metadata file's split (``train.txt`` -> ``root/train``), if it exists."""
    word = _split_word(meta)
    if word is None:
        return None
    return next((d for d in root.iterdir() if d.is_dir() and d.name.lower() == word), None)


@SOURCES.register("covidx")
class CovidxSource(Source):
    """COVIDx metadata files (``patient_id filename label source`` per line) + an image folder.

    ``data.metadata`` lists the text files (default: every ``*.txt`` in ``data.path``).
    """

    def scan(self) -> FileTable:
        root = self._root()
        metas = [Path(m).expanduser() for m in self.cfg.metadata] or sorted(root.glob("*.txt"))
        if not metas:
            raise DataError(f"data.metadata: no metadata files given and no *.txt in {root}")
        files, ignored = image_files(root)
        by_name: dict[str, list[Path]] = defaultdict(list)
        for p in files:
            by_name[p.name].append(p)
        named = [split_of(m) for m in metas]
        table = FileTable(label_files=metas, os_files=ignored, splits=[] if all(named) else None)
        used: dict[Path, str] = {}
        for meta, split in zip(metas, named):
            if not meta.is_file():
                raise DataError(f"data.metadata: {meta} does not exist")
            own = split_folder(root, meta)
            for n, line in enumerate(meta.read_text(errors="replace").splitlines(), 1):
                if not line.strip():
                    continue
                row = parse_line(line)
                if row is None:
                    raise DataError(f"data.metadata: {meta}:{n}: expected 'patient_id filename label "
                                    f"[source]' with an image file name, got {line!r}")
                patient, name, label = row
                candidates = by_name.get(name, [])
                mine = [p for p in candidates if own is not None and own in p.parents]
                found = mine or candidates
                if not found:
                    table.missing.append((label, f"{meta}:{n}: {name}"))
                    continue
                if len(found) > 1:
                    raise DataError(f"data.metadata: {meta}:{n}: {name} matches {len(found)} files under "
                                    f"{root}: {', '.join(map(str, found[:5]))}; keep one, or keep each "
                                    "split's files in a folder named like its metadata file")
                if found[0] in used:
                    raise DataError(f"data.metadata: {meta}:{n}: {found[0]} is already named by "
                                    f"{used[found[0]]}; each image may be listed once")
                used[found[0]] = f"{meta}:{n}"
                table.paths.append(found[0])
                table.patient_ids.append(patient)
                table.labels.append(label)
                if table.splits is not None:
                    table.splits.append(split)
        drop_rows(table.missing, table.named_per_class(), self.cfg.strict or not table.paths,
                  f"data.path: {len(table.missing)} file(s) named in the metadata are not under {root}",
                  f"data.path: skipped {len(table.missing)} metadata entries with no image file")
        table.class_names = sorted(set(table.labels))
        if len(table.class_names) < 2:
            raise DataError(f"data.metadata: need at least two labels, found {table.class_names}")
        return table

