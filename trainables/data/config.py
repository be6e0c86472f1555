"""The data schema of a trial (``data:`` in a trial config or a spec), validated with pydantic, the
registry of data source names it accepts (each source module registers itself) and the registry of
data set presets (``data.preset``: one module per public data set in :mod:`trainables.data.presets`)."""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..registry import Registry, StrictModel

SOURCES: Registry[Callable[[DataConfig], Any]] = Registry("data source")
PRESETS: Registry[dict[str, Any]] = Registry("data preset")
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "dev": "val", "test": "test", "testing": "test"}


class SyntheticConfig(StrictModel):
    """Parameters of the built-in generator (:mod:`trainables.data.synthetic`)."""

    n: int = Field(3000, ge=30)
    seed: int = 0
    difficulty: float = Field(1.0, gt=0)
    shares: dict[str, float] | None = None
    images_per_patient: float = Field(3.0, ge=1)


class JoinedLabels(StrictModel):
    """One column holding several findings joined by ``sep`` (NIH's ``Cardiomegaly|Effusion``)."""

    column: str
    sep: str = "|"


class TableConfig(StrictModel):
    """How the ``table`` source reads a label table (CSV/TSV, ``.gz``/``.zip`` read directly).

    Labels come from exactly one of ``label`` (a column of class names), ``labels_from`` (joined
    findings) or ``label_columns`` (one column per finding: 1 positive, 0 or blank negative,
    ``uncertain_value`` uncertain). ``target`` maps findings to classes (``{class: [finding, ...]}``);
    a row matching no class goes to ``rest`` (``drop`` or a class name), one matching several is
    resolved by ``conflict``. Uncertain findings follow the CheXpert paper's policies (Irvin et al.
    2019): ``ignore`` (U-Ignore: the row is dropped when an uncertain finding decides its class),
    ``positive`` (U-Ones) or ``negative`` (U-Zeros).
    """

    file: str | None = None  # relative to data.path; glob patterns allowed (one match)
    split_files: dict[str, str] = {}  # split -> image-name list (with file) or that split's label table
    sep: str | None = None  # sniffed when unset
    image: str
    image_suffix: str = ""
    label: str | None = None
    labels_from: JoinedLabels | None = None
    label_columns: list[str] | None = None
    target: dict[str, list[str]] | None = None
    rest: str = "drop"
    conflict: Literal["drop", "first", "error"] = "error"
    uncertain: Literal["ignore", "positive", "negative"] = "ignore"
    uncertain_value: float = -1.0
    patient: str | None = None
    filter: dict[str, list[str]] = {}
    split: str | None = None  # column holding train/val/test (or the aliases of data.split)

    @field_validator("split_files")
    @classmethod
    def _split_names(cls, v: dict[str, str]) -> dict[str, str]:
        return {_split_name(k, "table.split_files"): f for k, f in v.items()}

    @field_validator("filter", mode="before")
    @classmethod
    def _filter_values(cls, v: Any) -> Any:
        if isinstance(v, dict):  # YAML reads PA as a string but 1 as an int: compare as text
            return {k: [str(x) for x in (vals if isinstance(vals, list) else [vals])] for k, vals in v.items()}
        return v

    @field_validator("target", mode="before")
    @classmethod
    def _target_values(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: [str(x) for x in (vals if isinstance(vals, list) else [vals])] for k, vals in v.items()}
        return v

    @model_validator(mode="after")
    def _one_label_rule(self) -> TableConfig:
        given = [n for n in ("label", "labels_from", "label_columns") if getattr(self, n)]
        if len(given) != 1:
            raise ValueError(f"table: set exactly one of label, labels_from, label_columns (got {given or 'none'})")
        if given[0] != "label" and not self.target:
            raise ValueError(f"table.target: required with table.{given[0]} (which findings make each class)")
        if self.file is None and not self.split_files:
            raise ValueError("table: set table.file, or table.split_files with one label table per split")
        if self.target and self.rest != "drop" and not self.rest:
            raise ValueError("table.rest: 'drop' or a class name")
        return self


def _split_name(name: str, field: str) -> str:
    if name.lower() not in SPLIT_ALIASES:
        raise ValueError(f"{field}: {name!r} is not a split name (train, val, test or {sorted(SPLIT_ALIASES)})")
    return SPLIT_ALIASES[name.lower()]


class DataConfig(StrictModel):
    """Where the images come from, their sizes, and how they are split.

    ``split``: ``auto`` keeps the data set's own split when it has one (split folders, split-named
    metadata files, a table's split column or lists, MedMNIST) and splits by patient otherwise;
    ``random`` always splits by patient (stratified, ``val_fraction``/``test_fraction``, ``split_seed``);
    ``predefined`` requires the data set's own. ``val_from_train`` replaces an official validation
    split (or supplies a missing one) by that fraction of the training patients, per class.

    ``equalize``: histogram equalisation (report 002, Pillow's ``ImageOps.equalize``), applied once
    to every image as it is prepared, on uint8 at the load size, and part of the cache key. The
    input normalisation that goes with it is the model's choice (``model_options.normalisation:
    half`` for the report's 0.5 and 0.5).
    """

    preset: str | None = Field(None, exclude=True)  # applied once: a dumped config holds its settings
    source: str = "synthetic"
    path: Path | None = None
    metadata: list[Path] = []
    class_names: list[str] | None = None
    load_size: int = Field(36, ge=8)
    image_size: int = Field(32, ge=8)
    channels: Literal[1, 3] = 1
    equalize: bool = False  # histogram equalisation of every prepared image, once (report 002)
    positive_class: str = "covid"
    normal_class: str = "normal"  # the cascade's first stage: normal vs the other classes
    split: Literal["auto", "random", "predefined"] = "auto"
    val_fraction: float = Field(0.15, gt=0, lt=1)
    test_fraction: float = Field(0.15, gt=0, lt=1)
    val_from_train: float | None = Field(None, gt=0, lt=1)
    split_seed: int = 0
    patient_regex: str | None = None  # patient id from the file name (else its path): group 1 or the match
    strict: bool = True  # a missing or unreadable file is an error; false: left out, counted per class
    cache_dir: Path | None = None
    table: TableConfig | None = None
    synthetic: SyntheticConfig = SyntheticConfig()

    _source = field_validator("source")(lambda v: SOURCES.check(v))

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, values: Any) -> Any:
        """``preset``'s settings under the ones given beside it (``table`` merged key by key)."""
        if not isinstance(values, dict) or not values.get("preset"):
            return values
        preset = PRESETS.get(PRESETS.check(values["preset"]))
        merged = {**preset, **values}
        if isinstance(preset.get("table"), dict) and isinstance(values.get("table"), dict):
            merged["table"] = {**preset["table"], **values["table"]}
        return merged

    @field_validator("patient_regex")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"not a regular expression ({exc})") from None
        return v

    def decoding(self) -> dict[str, Any]:
        """The settings that change each prepared image (the preparation's work-folder key; part of
        every source's cache key). ``equalize`` appears only when on, so earlier entries keep their keys."""
        return {"load_size": self.load_size, "channels": self.channels, **({"equalize": True} if self.equalize else {})}

    @model_validator(mode="after")
    def _sizes(self) -> DataConfig:
        if self.image_size > self.load_size:
            raise ValueError(f"image_size ({self.image_size}) must be <= load_size ({self.load_size})")
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must be < 1")
        if (self.source == "table") != (self.table is not None):
            raise ValueError("data.table: required by source 'table' and read by no other source")
        return self
