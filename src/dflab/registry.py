"""Small explicit registries (detectors, synthesizers, datasets, protocols, recipes, schedules).

A registry is a dict plus a decorator that refuses duplicates. Registries are filled by explicit imports in each
package's ``__init__`` — never by scanning the file system — so a reader can see every registered name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from dflab.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name → object mapping whose names are the CLI names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            self.add(name, obj)
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        if name in self._items:
            raise KeyError(f"{self.kind} {name!r} is already registered")
        self._items[name] = obj

    def remove(self, name: str) -> T:
        """Unregister ``name`` and return its object (a plugin or a test that registered something takes it back)."""
        if name not in self._items:
            raise UnknownNameError(f"unknown {self.kind} {name!r}")
        return self._items.pop(name)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def __len__(self) -> int:
        return len(self._items)
