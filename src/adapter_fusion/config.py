"""Shared JSON round-trip and validation helpers for the frozen dataclass configs.

Every config serialises with a discriminator (``"config_type"``) and the library version. Loading a dict written by
adapter-fusion (it carries ``library_version``) warns about and drops unknown keys (a newer version wrote them); in a
hand-written dict, as in keyword arguments, an unknown key is an error with a did-you-mean. Missing required keys
raise. No float field of any config may be NaN or infinite.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import json
import math
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from adapter_fusion._version import __version__
from adapter_fusion.io import atomic_write_text

C = TypeVar("C", bound="JsonConfig")


def did_you_mean(name: str, allowed: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest allowed name, or ``""`` when none is close."""
    close = difflib.get_close_matches(name, list(allowed), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_known_keys(where: str, keys: Iterable[str], allowed: Iterable[str]) -> None:
    """Raise ``ValueError`` naming the first unknown key, the closest allowed one and all allowed ones."""
    allowed = sorted(allowed)
    unknown = [key for key in keys if key not in allowed]
    if unknown:
        raise ValueError(
            f"{where}: unknown key {unknown[0]!r}{did_you_mean(str(unknown[0]), allowed)} "
            f"(allowed: {', '.join(allowed)})"
        )


def check_finite(field: str, value: Any) -> None:
    """Refuse NaN and infinities in a float, or in a tuple/list of numbers."""
    values = value if isinstance(value, (tuple, list)) else (value,)
    for item in values:
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"{field} must be a finite number; got {value!r}")


def check_choice(field: str, value: Any, allowed: Iterable[Any]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{field} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def check_positive(field: str, value: Any, *, allow_zero: bool = False, integer: bool = False) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "an integer" if integer else "a number"
        raise TypeError(f"{field} must be {kind}; got {value!r} ({type(value).__name__})")
    check_finite(field, value)
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{field} must be {bound}; got {value!r}")
    if integer and value > MAX_INTEGER:  # Python ints have no bound; torch, numpy and the Trainer do
        raise ValueError(f"{field} must be at most {MAX_INTEGER} (a 64-bit integer); got {value!r}")


MAX_INTEGER = 2**63 - 1


def check_range(field: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:  # NaN fails too
        raise ValueError(f"{field} must be a number in [{low}, {high}]; got {value!r}")


def check_probability(field: str, value: Any) -> None:
    """A dropout rate: in [0, 1) (1 would drop everything)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{field} must be a number in [0, 1); got {value!r}")


class _ConfigMeta(type):
    """Refuses unknown keyword arguments with a did-you-mean before the dataclass ``__init__`` sees them, after
    the class has gathered the keywords it hands on (``route_keywords``, e.g. a fusion method's options)."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        kwargs = cls.route_keywords(kwargs)  # type: ignore[attr-defined]
        parameters = inspect.signature(cls.__init__).parameters  # type: ignore[misc]
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            aliases = getattr(cls, "field_aliases", {})
            unknown = [key for key in kwargs if (key not in parameters or key == "self") and key not in aliases]
            if unknown:
                allowed = cls.keyword_names()  # type: ignore[attr-defined]
                raise TypeError(
                    f"{cls.__name__} got an unknown keyword argument {unknown[0]!r}"
                    f"{did_you_mean(unknown[0], allowed)} (allowed: {', '.join(allowed)})"
                )
        return super().__call__(*args, **kwargs)


def _with_finite_check(post_init: Any) -> Any:
    def __post_init__(self: JsonConfig) -> None:
        self._check_finite_fields()
        post_init(self)

    __post_init__.__wrapped__ = post_init  # type: ignore[attr-defined]
    return __post_init__


def field_aliases(**aliases: str) -> Any:
    """Class decorator (above ``@dataclass``): accept other documented names of fields, as constructor keywords,
    ``from_dict`` keys and read-only attributes (``AdapterConfig(adapter_dropout=0.1).dropout == 0.1``). The
    alias is never stored: ``to_dict`` writes the field's own name."""

    def decorate(cls: type[C]) -> type[C]:
        fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        bad = {alias: field for alias, field in aliases.items() if field not in fields or alias in fields}
        if bad:
            raise TypeError(f"{cls.__name__}: bad field aliases {bad}")
        cls.field_aliases = {**cls.field_aliases, **aliases}
        original = cls.__init__

        @functools.wraps(original)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **cls.rename_aliases(kwargs))

        cls.__init__ = __init__  # type: ignore[method-assign]
        for alias, field in aliases.items():
            setattr(cls, alias, property(lambda self, f=field: getattr(self, f), doc=f"Alias of ``{field}``."))
        return cls

    return decorate


@dataclasses.dataclass(frozen=True)
class JsonConfig(metaclass=_ConfigMeta):
    """Base class: ``to_dict`` / ``from_dict`` / ``save`` / ``load`` with a type discriminator.

    Every subclass's ``__post_init__`` first refuses NaN and infinities in any float field (subclasses need not
    list their float fields, and fields added later are covered)."""

    config_type: ClassVar[str] = "config"
    field_aliases: ClassVar[dict[str, str]] = {}
    """Other accepted name -> field (see ``field_aliases``)."""
    nested_fields: ClassVar[tuple[str, ...]] = ()
    """Fields holding another config (filled from keywords by ``route_keywords``, not set from the CLI)."""

    @classmethod
    def option_classes(cls) -> list[tuple[str, type[JsonConfig]]]:
        """(title, config class) of the configs whose fields the constructor also accepts as keywords."""
        return []

    @classmethod
    def keyword_names(cls) -> list[str]:
        """Every keyword the constructor accepts: fields, their aliases, and the fields of ``option_classes``."""
        names = [f.name for f in dataclasses.fields(cls)] + list(cls.field_aliases)  # type: ignore[arg-type]
        for _, option_class in cls.option_classes():
            names += [name for name in option_class.keyword_names() if name not in names]
        return names

    @classmethod
    def route_keywords(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Constructor keywords as the dataclass takes them (subclasses gather options into nested configs)."""
        return kwargs

    @classmethod
    def inapplicable_options(cls, values: dict[str, Any]) -> dict[str, str]:
        """Keywords among ``values`` that the config they would build does not read (keyword -> why)."""
        return {}

    @classmethod
    def rename_aliases(cls, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` with aliased keys under their field's name; an alias and its field both given differently
        raise ``ValueError``."""
        values = dict(values)
        for alias, field in cls.field_aliases.items():
            if alias not in values:
                continue
            value = values.pop(alias)
            if field in values and values[field] != value:
                raise ValueError(
                    f"{cls.__name__}: {alias}={value!r} and {field}={values[field]!r} name the same setting; give one"
                )
            values[field] = value
        return values

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("__post_init__")
        if own is not None and not hasattr(own, "__wrapped__"):
            cls.__post_init__ = _with_finite_check(own)  # type: ignore[method-assign]

    def __post_init__(self) -> None:
        self._check_finite_fields()

    def _check_finite_fields(self) -> None:
        for f in dataclasses.fields(self):
            check_finite(f.name, getattr(self, f.name))

    def inapplicable_fields(self) -> dict[str, str]:
        """Fields these settings do not read (field -> why), e.g. another fusion method's options. The CLI and
        config files refuse a value given for one; subclasses override."""
        return {}

    def to_dict(self) -> dict[str, Any]:

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
        written_by_library = data.pop("library_version", None) is not None
        data = cls.rename_aliases(data)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        options = set(cls.keyword_names()) - set(fields) - set(cls.field_aliases)
        unknown = sorted(set(data) - set(fields) - options)
        if unknown and not written_by_library:
            check_known_keys(cls.__name__, data, fields)
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
            if name in options:
                kwargs[name] = value
                continue
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


_DOCUMENTED = {
    "AdapterConfig": "adapter_fusion.adapters.config",
    "FusionConfig": "adapter_fusion.fusion.config",
    "ModelConfig": "adapter_fusion.training.config",
    "TrainingConfig": "adapter_fusion.training.config",
}


def __getattr__(name: str) -> Any:
    """The documented ``from adapter_fusion.config import FusionConfig`` (and the other configs), loaded on use:
    each config lives beside what it configures, and those modules build on this one."""
    if name not in _DOCUMENTED:
        raise AttributeError(f"module 'adapter_fusion.config' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_DOCUMENTED[name]), name)
