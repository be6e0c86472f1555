"""The data schema of a trial (``data:`` in a trial config or a spec), validated with pydantic, and
the registry of data source names it accepts (each source module registers itself)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..registry import Registry, StrictModel

SOURCES: Registry[Callable[[DataConfig], Any]] = Registry("data source")


class SyntheticConfig(StrictModel):
    """Parameters of the built-in generator (:mod:`trainables.data.synthetic`)."""

    n: int = Field(3000, ge=30)
    seed: int = 0
    difficulty: float = Field(1.0, gt=0)
    shares: dict[str, float] | None = None
    images_per_patient: float = Field(3.0, ge=1)


class DataConfig(StrictModel):
    """Where the images come from, their sizes, and how they are split."""

    source: str = "synthetic"
    path: Path | None = None
    metadata: list[Path] = []
    class_names: list[str] | None = None
    load_size: int = Field(36, ge=8)
    image_size: int = Field(32, ge=8)
    channels: Literal[1, 3] = 1
    positive_class: str = "covid"
    normal_class: str = "normal"  # the cascade's first stage: normal vs the other classes
    val_fraction: float = Field(0.15, gt=0, lt=1)
    test_fraction: float = Field(0.15, gt=0, lt=1)
    split_seed: int = 0
    strict: bool = True  # a missing or unreadable file is an error; false: left out, counted per class
    cache_dir: Path | None = None
    synthetic: SyntheticConfig = SyntheticConfig()

    _source = field_validator("source")(lambda v: SOURCES.check(v))

    @model_validator(mode="after")
    def _sizes(self) -> DataConfig:
        if self.image_size > self.load_size:
            raise ValueError(f"image_size ({self.image_size}) must be <= load_size ({self.load_size})")
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must be < 1")
        return self
