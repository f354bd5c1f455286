"""Shared JSON round-trip and validation helpers for the frozen dataclass configs.

Every config serialises with a discriminator (``"config_type"``) and the library version. Loading warns about
and drops unknown keys (written by a newer version) and raises on missing required keys.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from adapter_fusion.io import atomic_write_text

C = TypeVar("C", bound="JsonConfig")


def check_choice(field: str, value: Any, allowed: Iterable[Any]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{field} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def check_positive(field: str, value: Any, *, allow_zero: bool = False, integer: bool = False) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "an integer" if integer else "a number"
        raise TypeError(f"{field} must be {kind}; got {value!r} ({type(value).__name__})")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{field} must be {bound}; got {value!r}")


def check_range(field: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValueError(f"{field} must be a number in [{low}, {high}]; got {value!r}")


@dataclasses.dataclass(frozen=True)
class JsonConfig:
    """Base class: ``to_dict`` / ``from_dict`` / ``save`` / ``load`` with a type discriminator."""

    config_type: ClassVar[str] = "config"

    def to_dict(self) -> dict[str, Any]:
        from adapter_fusion import __version__

        data: dict[str, Any] = {"config_type": self.config_type, "library_version": __version__}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            data[f.name] = list(value) if isinstance(value, tuple) else value
        return data

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        if not isinstance(data, dict):
            raise TypeError(f"{cls.__name__}.from_dict expects a dict; got {type(data).__name__}")
        data = dict(data)
        kind = data.pop("config_type", cls.config_type)
        if kind != cls.config_type:
            raise ValueError(f"expected a {cls.config_type!r} config; got config_type={kind!r}")
        data.pop("library_version", None)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            warnings.warn(
                f"{cls.__name__}: ignoring unknown keys {unknown} (written by a newer adapter-fusion?)", stacklevel=2
            )
        missing = [
            name
            for name, f in fields.items()
            if name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise KeyError(f"{cls.__name__}: missing required keys {missing}")
        kwargs = {}
        for name, value in data.items():
            if name not in fields:
                continue
            if isinstance(value, list) and "tuple" in str(fields[name].type):
                value = tuple(value)
            kwargs[name] = value
        return cls(**kwargs)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def save(self, path: str | Path) -> None:
        atomic_write_text(Path(path), self.to_json() + "\n")

    @classmethod
    def load(cls: type[C], path: str | Path) -> C:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{cls.__name__}: no config file at {path}")
        return cls.from_dict(json.loads(path.read_text()))

    def replace(self: C, **changes: Any) -> C:
        return dataclasses.replace(self, **changes)
