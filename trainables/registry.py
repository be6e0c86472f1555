"""Name -> factory registries, one per strategy dimension (like timm's ``register_model``), and the
strict pydantic base every config section shares."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

T = TypeVar("T")


class StrictModel(BaseModel):
    """A config section: unknown keys are errors, field names may start with ``model_``."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class Registry(Generic[T]):
    """A named table of factories; ``@REG.register("name")`` adds one, ``REG.get(name)`` finds it."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return add

    def unknown(self, name: Any) -> str:
        """The message for a name that is not registered, listing those that are."""
        return f"unknown {self.kind} {name!r}; registered: {', '.join(self.names())}"

    def check(self, name: str) -> str:
        """``name`` if registered, else ``ValueError`` listing the registered names (for validators)."""
        if name not in self._entries:
            raise ValueError(self.unknown(name))
        return name

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(self.unknown(name)) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: Any) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
