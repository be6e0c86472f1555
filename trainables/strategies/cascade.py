"""Report 001's cascade as a strategy (``cascade: true``): the trial's network is two networks of
``model``, normal vs infected, then among the infected classes (:class:`~trainables.models.cascade.Cascade`)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ..errors import ConfigError
from ..hooks import TrialHook, register_hook
from ..metric_names import resolve_class
from ..models.cascade import Cascade


@register_hook("cascade")
class CascadeHook(TrialHook):
    """Builds the cascade instead of one network; every other part of the loop is unchanged."""

    @classmethod
    def active(cls, cfg: Any) -> bool:
        return cfg.cascade

    @classmethod
    def validate(cls, cfg: Any) -> None:
        """The cascade outputs log-probabilities: LDAM's margins and scale are for a linear head's logits."""
        if cfg.cascade and cfg.loss == "ldam":
            raise ValueError("loss: 'ldam' sets margins on a linear head's logits; the cascade outputs "
                             "log-probabilities: use another loss with cascade: true")

    def network(self, class_names: list[str], build: Callable[[int], nn.Module]) -> nn.Module:
        if len(class_names) < 3:
            raise ConfigError(f"cascade: needs 3 or more classes, the data have {class_names}")
        normal = resolve_class(class_names, self.cfg.data.normal_class, "data.normal_class")
        return Cascade(build(2), build(len(class_names) - 1), normal, len(class_names))
