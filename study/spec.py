"""Study spec files (YAML) and the trial configs they describe."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from trainables.config import parse_config
from trainables.strategies import PRESETS


class SpecError(ValueError):
    """A spec file cannot be used; the message names the file and the field."""


def load_spec(path: str | Path) -> dict[str, Any]:
    """Read a YAML spec, with one clear error for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: spec file does not exist")
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(spec, dict):
        raise SpecError(f"{path}: expected a mapping at the top level")
    return spec


def strategy_knobs(spec: dict[str, Any], strategy: str) -> dict[str, Any]:
    """The dimension values of one of the spec's strategies (a preset name or an inline dict)."""
    strategies = spec.get("strategies") or {}
    if strategy not in strategies:
        raise SpecError(f"strategies: no strategy {strategy!r} in the spec (has {', '.join(strategies)})")
    value = strategies[strategy]
    if isinstance(value, str):
        if value not in PRESETS:
            raise SpecError(f"strategies.{strategy}: unknown strategy preset {value!r}; "
                            f"registered: {', '.join(PRESETS)}")
        return dict(PRESETS.get(value))
    if isinstance(value, dict):
        return dict(value)
    raise SpecError(f"strategies.{strategy}: expected a preset name or a mapping of knobs")


def trial_config(spec: dict[str, Any], strategy: str, seed: int = 0,
                 overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """A validated trial config: the spec's data, model and training, one strategy, one seed."""
    config = {"data": spec.get("data") or {}, "model": spec.get("model", "simple_cnn"),
              **(spec.get("training") or {}), **strategy_knobs(spec, strategy), "seed": seed,
              **(overrides or {})}
    return parse_config(config).model_dump(mode="json")
