"""``table``: a label table (CSV/TSV, ``.gz``/``.zip`` read directly, with pandas) next to the images.

Which columns hold what is ``data.table`` (:class:`~trainables.data.config.TableConfig`). Rows go
through, in order: ``filter`` (keep rows by column values), the labels (a class column, joined
findings or one column per finding, uncertain values by policy), the ``target`` mapping (findings
to exactly one class; ``rest`` and ``conflict`` for rows matching none or several), the official
split (a column, or ``split_files``), the image file (a path below ``data.path``, matched by its
trailing path components, so ``CheXpert-v1.0-small/train/...`` resolves whether ``data.path`` is
the data set's folder or its parent; a bare name matching several files is an error) and the
patient (a column, or ``data.patient_regex``). Every row a rule leaves out is counted per rule
(``FileTable.dropped``, and one summary note); a column that is not in the table, a filter that
keeps nothing or a class left without rows is one :class:`DataError` naming the field.
"""
from __future__ import annotations

import csv
import gzip
import zipfile
from collections import defaultdict
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from ...errors import DataError
from ..config import SOURCES, SPLIT_ALIASES, TableConfig
from .base import FileTable, Source, drop_rows, image_files

GLOB_CHARS = set("*?[")


def read_table(path: Path, sep: str | None = None) -> pd.DataFrame:
    """Every cell of a CSV/TSV as text (blanks are ``""``), with its line number in ``_line``;
    ``sep`` sniffed from the first 64 KiB when None. ``.gz`` and single-member ``.zip`` read directly.
    Raises :class:`DataError` naming the file for an unreadable or malformed table."""
    try:
        if sep is None:
            sep = _sniff(_head(path))
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, compression="infer",
                            skipinitialspace=False)
    except (OSError, ValueError, csv.Error, UnicodeDecodeError, zipfile.BadZipFile,
            pd.errors.ParserError) as exc:
        raise DataError(f"data.table: cannot read {path} as a table ({exc})") from None
    frame = frame.fillna("")  # short rows: pandas fills their missing fields with NaN even so
    frame.columns = [str(c).strip() for c in frame.columns]
    frame["_line"] = [f"{path.name}:{i + 2}" for i in range(len(frame))]
    return frame


def _sniff(head: str) -> str:
    """The delimiter: csv's sniffer, else the candidate the header line holds most of (rows of
    uneven length defeat the sniffer)."""
    try:
        return csv.Sniffer().sniff(head, delimiters=",\t;|").delimiter
    except csv.Error:
        header = head.splitlines()[0] if head else ""
        return max(",\t;|", key=header.count)


def _head(path: Path, size: int = 65536) -> str:
    name = path.name.lower()
    if name.endswith(".gz"):
        with gzip.open(path, "rb") as f:
            data = f.read(size)
    elif name.endswith(".zip"):
        with zipfile.ZipFile(path) as z:
            with z.open(z.namelist()[0]) as f:
                data = f.read(size)
    else:
        with open(path, "rb") as f:
            data = f.read(size)
    text = data.decode("utf-8", errors="replace")
    return text[:text.rfind("\n")] if "\n" in text else text


def resolve_file(root: Path, name: str, field: str) -> Path:
    """A table or list file named relative to ``root`` (or absolute); a glob pattern must match one."""
    if GLOB_CHARS & set(name):
        found = sorted(p for p in root.glob(name) if p.is_file())
        if len(found) != 1:
            raise DataError(f"{field}: {name!r} matches {len(found)} files in {root}"
                            + (f": {', '.join(p.name for p in found[:5])}" if found else "") + "; it must match one")
        return found[0]
    path = (root / name).expanduser()
    if not path.is_file():
        raise DataError(f"{field}: {path} does not exist")
    return path


class FileIndex:
    """Image files under a folder, found by a path whose trailing components they share."""

    def __init__(self, root: Path) -> None:
        self.root = root
        files, self.os_files = image_files(root)
        self.by_name: dict[str, list[tuple[str, ...]]] = defaultdict(list)
        for p in files:
            parts = p.relative_to(root).parts
            self.by_name[parts[-1]].append(parts)

    def find(self, value: str) -> list[Path]:
        """The files named by ``value``: those whose path below the root ends with all of
        ``value``'s components, or equals a tail of them (``value`` may start with folders above the
        root); among those, the ones sharing the most components (several: ambiguous)."""
        wanted = PurePosixPath(value.replace("\\", "/")).parts
        if not wanted:
            return []
        best, hits = 0, []
        for parts in self.by_name.get(wanted[-1], []):
            k = 0
            while k < min(len(parts), len(wanted)) and parts[-1 - k] == wanted[-1 - k]:
                k += 1
            if k not in (len(wanted), len(parts)):
                continue  # only a tail in common: another file of the same name, not this one
            if k > best:
                best, hits = k, [parts]
            elif k == best:
                hits.append(parts)
        return [self.root.joinpath(*h) for h in hits]


@SOURCES.register("table")
class TableSource(Source):
    """A label table mapped by ``data.table``; see the module docstring for the order of the rules."""

    def params(self) -> dict:
        return {**super().params(), "table": self.cfg.table.model_dump(mode="json")}

    def scan(self) -> FileTable:
        root = self._root()
        t: TableConfig = self.cfg.table
        table = FileTable()
        frame, table.label_files = self._rows(root, t, table.dropped)
        total = len(frame) + table.dropped.get("not in split_files", 0)
        frame = self._filter(frame, t, table.dropped)
        classes, frame = self._classes(frame, t, table.dropped)
        index = FileIndex(root)
        table.os_files = index.os_files
        seen: dict[Path, tuple[str, str]] = {}
        duplicates = 0
        has_split = "_split" in frame.columns
        table.splits = [] if has_split else None
        images = frame[t.image].tolist()
        for value, cls, line, split, patient in zip(
                images, frame["_class"], frame["_line"],
                frame["_split"] if has_split else [None] * len(frame),
                frame[t.patient] if t.patient else [None] * len(frame)):
            name = value.strip() + t.image_suffix
            found = index.find(name) if value.strip() else []
            if not found:
                table.missing.append((cls, f"{line}: {name or '(blank)'}"))
                continue
            if len(found) > 1:
                raise DataError(f"data.table.image: {line}: {name} matches {len(found)} files under {root}: "
                                f"{', '.join(map(str, found[:5]))}; give a path that tells them apart")
            path = found[0]
            if path in seen:
                first_line, first_cls = seen[path]
                if first_cls != cls:
                    raise DataError(f"data.table: {line} labels {path.name} {cls!r}, but {first_line} "
                                    f"labels it {first_cls!r}; each image has one class")
                duplicates += 1
                continue
            seen[path] = (line, cls)
            table.paths.append(path)
            table.labels.append(cls)
            table.patient_ids.append(patient.strip() if patient is not None and patient.strip()
                                     else self.patient_of(path, root, path.relative_to(root).as_posix()))
            if has_split:
                table.splits.append(split)
        if duplicates:
            table.dropped["duplicate rows"] = duplicates
        drop_rows(table.missing, table.named_per_class(), self.cfg.strict or not table.paths,
                  f"data.path: {len(table.missing)} image file(s) named in the table are not under {root}",
                  f"data.path: skipped {len(table.missing)} table rows with no image file")
        table.class_names = classes
        empty = [c for c in classes if c not in set(table.labels)]
        if empty:
            raise DataError(f"data.table.target: class(es) {empty} have no image after the table's rules "
                            f"({_dropped(table.dropped)})")
        if not t.patient and not self.cfg.patient_regex:
            table.patients_known = False
            table.notes.append("data.table: no patient column or data.patient_regex: each image is its own "
                               "patient, so two films of one patient can land in two splits")
        if table.dropped:
            table.notes.append(f"data.table: {total} rows, {len(table.paths)} images kept; left out: "
                               f"{_dropped(table.dropped)}")
        return table

    def _rows(self, root: Path, t: TableConfig, dropped: dict[str, int]) -> tuple[pd.DataFrame, list[Path]]:
        """The table's rows (with ``_split`` when the data set has an official split)."""
        if t.file is None:  # one label table per split
            parts, files = [], []
            for split, name in t.split_files.items():
                path = resolve_file(root, name, f"data.table.split_files.{split}")
                part = read_table(path, t.sep)
                part["_split"] = split
                parts.append(part)
                files.append(path)
            frame = pd.concat(parts, ignore_index=True)
        else:
            path = resolve_file(root, t.file, "data.table.file")
            frame, files = read_table(path, t.sep), [path]
        self._check_columns(frame, t, files)
        if t.split:
            values = frame[t.split].str.strip().str.lower()
            bad = frame[~values.isin(SPLIT_ALIASES)]
            if len(bad):
                raise DataError(f"data.table.split: {bad['_line'].iloc[0]}: {bad[t.split].iloc[0]!r} is not a "
                                f"split name (train, val, test or {sorted(SPLIT_ALIASES)})")
            frame["_split"] = values.map(SPLIT_ALIASES)
        elif t.file is not None and t.split_files:
            frame, lists = self._split_lists(root, frame, t, dropped)
            files += lists
        return frame, files

    def _split_lists(self, root: Path, frame: pd.DataFrame, t: TableConfig,
                     dropped: dict[str, int]) -> tuple[pd.DataFrame, list[Path]]:
        """The official split from lists of image names, one per line (NIH's ``test_list.txt``)."""
        owner: dict[str, str] = {}
        by_name: dict[str, str] = {}
        paths = []
        for split, name in t.split_files.items():
            path = resolve_file(root, name, f"data.table.split_files.{split}")
            paths.append(path)
            for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                image = line.strip().replace("\\", "/")
                if not image:
                    continue
                if owner.get(image, split) != split:
                    raise DataError(f"data.table.split_files: {path.name}:{n}: {image} is also in the "
                                    f"{owner[image]} list; an image belongs to one split")
                owner[image] = split
                base = PurePosixPath(image).name
                by_name[base] = split if by_name.get(base, split) == split else ""  # "": in two lists

        def split_of(value: str) -> str | None:
            value = value.strip().replace("\\", "/")
            for text in (value, value + t.image_suffix):
                if text in owner:
                    return owner[text]
            found = by_name.get(PurePosixPath(value + t.image_suffix).name)
            if found == "":
                raise DataError(f"data.table.split_files: {value} is named by two split lists under different "
                                "folders; list paths that tell them apart")
            return found

        split = frame[t.image].map(split_of)
        frame = frame.assign(_split=split)
        _count(dropped, "not in split_files", int(split.isna().sum()))
        return frame[split.notna()], paths

    def _check_columns(self, frame: pd.DataFrame, t: TableConfig, files: list[Path]) -> None:
        named = {"image": [t.image], "label": [t.label] if t.label else [],
                 "labels_from.column": [t.labels_from.column] if t.labels_from else [],
                 "label_columns": t.label_columns or [], "patient": [t.patient] if t.patient else [],
                 "filter": list(t.filter), "split": [t.split] if t.split else []}
        columns = [c for c in frame.columns if c not in ("_line", "_split")]
        for field, wanted in named.items():
            absent = [c for c in wanted if c not in columns]
            if absent:
                raise DataError(f"data.table.{field}: column(s) {absent} not in {', '.join(f.name for f in files)} "
                                f"(columns: {', '.join(columns)})")

    def _filter(self, frame: pd.DataFrame, t: TableConfig, dropped: dict[str, int]) -> pd.DataFrame:
        for column, values in t.filter.items():
            keep = frame[column].str.strip().isin(values)
            if not keep.any():
                present = frame[column].value_counts().head(8)
                raise DataError(f"data.table.filter.{column}: no row has {values} (values there: "
                                f"{', '.join(f'{v!r} ({n})' for v, n in present.items())})")
            _count(dropped, f"filter {column}", int((~keep).sum()))
            frame = frame[keep]
        return frame

    def _classes(self, frame: pd.DataFrame, t: TableConfig, dropped: dict[str, int]) -> tuple[list[str], pd.DataFrame]:
        """Each row's class (``_class``), rows without one dropped and counted; the class names."""
        unsure: list[set[str]] = [set()] * len(frame)
        if t.label:
            found = [{v.strip()} if v.strip() else set() for v in frame[t.label]]
        elif t.labels_from:
            found = [{f.strip() for f in v.split(t.labels_from.sep) if f.strip()} for v in frame[t.labels_from.column]]
        else:
            found, unsure = _finding_columns(frame, t)
        classes = list(t.target) if t.target else sorted({f for s in found for f in s})
        if t.target and t.rest != "drop" and t.rest not in classes:
            classes.append(t.rest)
        out = []
        for findings, unc, line in zip(found, unsure, frame["_line"]):
            if t.target is None:
                matched = sorted(findings)
            else:
                matched = [c for c, vals in t.target.items() if findings & set(vals)]
                undecided = [c for c, vals in t.target.items() if unc & set(vals) and c not in matched]
                if undecided:
                    _count(dropped, "uncertain", 1)
                    out.append(None)
                    continue
            if not matched:
                if t.target is None or t.rest == "drop":
                    _count(dropped, "no class", 1)
                    out.append(None)
                else:
                    out.append(t.rest)
                continue
            if len(matched) > 1 and t.conflict != "first":
                if t.conflict == "error":
                    raise DataError(f"data.table.conflict: {line} matches classes {matched} (findings "
                                    f"{sorted(findings)}); set table.conflict: drop or first")
                _count(dropped, "several classes", 1)
                out.append(None)
                continue
            out.append(matched[0])
        frame = frame.assign(_class=out)
        kept = frame[frame["_class"].notna()]
        if kept.empty:
            raise DataError(f"data.table: no row is left with a class ({_dropped(dropped)}); check "
                            "table.target, table.filter and the label columns")
        return sorted(classes), kept


def _finding_columns(frame: pd.DataFrame, t: TableConfig) -> tuple[list[set[str]], list[set[str]]]:
    """Per row, the positive findings and (under U-Ignore) the uncertain ones, from one column per
    finding: 1 positive, ``uncertain_value`` uncertain, anything else (0, blank) negative."""
    columns = t.label_columns
    text = frame[columns].apply(lambda s: s.str.strip().replace("", "0"))
    values = text.apply(pd.to_numeric, errors="coerce")
    bad = values.isna().to_numpy()
    if bad.any():
        r, c = (int(i[0]) for i in bad.nonzero())
        raise DataError(f"data.table.label_columns: {frame['_line'].iloc[r]}: {columns[c]} is "
                        f"{text.iat[r, c]!r}, not a number")
    unc = (values == t.uncertain_value).to_numpy()
    pos = (values == 1).to_numpy() | (unc if t.uncertain == "positive" else False)
    names = np.array(columns)
    found = [set(names[row]) for row in pos]
    unsure = [set(names[row]) for row in unc] if t.uncertain == "ignore" else [set()] * len(frame)
    return found, unsure


def _count(counts: dict[str, int], rule: str, n: int) -> None:
    if n:
        counts[rule] = counts.get(rule, 0) + n


def _dropped(counts: dict[str, int]) -> str:
    return ", ".join(f"{rule} {n}" for rule, n in counts.items()) or "none dropped"
