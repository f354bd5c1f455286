"""A small generic name -> object registry (fusion methods, heads, tasks)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names (and aliases) to registered objects.

    Lookups of an unknown name raise a ``KeyError`` that quotes the name and lists what is registered.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, item: T, aliases: tuple[str, ...] = ()) -> T:
        key = name.lower()
        if key in self._items or key in self._aliases:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[key] = item
        for alias in aliases:
            alias_key = alias.lower()
            if alias_key in self._items or alias_key in self._aliases:
                raise ValueError(f"{self.kind} alias {alias!r} is already registered")
            self._aliases[alias_key] = key
        return item

    def decorator(self, name: str, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        def wrap(item: T) -> T:
            return self.register(name, item, aliases)

        return wrap

    def canonical_name(self, name: str) -> str:
        key = str(name).lower()
        if key in self._items:
            return key
        if key in self._aliases:
            return self._aliases[key]
        raise KeyError(f"unknown {self.kind} {name!r}; registered: {', '.join(sorted(self._items))}")

    def get(self, name: str) -> T:
        return self._items[self.canonical_name(name)]

    def __contains__(self, name: object) -> bool:
        key = str(name).lower()
        return key in self._items or key in self._aliases

    def names(self) -> list[str]:
        return sorted(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        return [(name, self._items[name]) for name in self.names()]
