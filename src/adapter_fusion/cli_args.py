"""Build argparse options from the config dataclasses: one ``--field`` per field, help from its docstring."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import textwrap
from functools import cache
from pathlib import Path
from typing import Any

from adapter_fusion.config import JsonConfig


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each dataclass field (PEP 257 attribute docstrings)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass is JsonConfig:
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, following in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def _parser_for(annotation: Any) -> tuple[Any, dict[str, Any]]:
    """argparse ``type`` and extra kwargs for a field annotation (strings, as written in the source)."""
    text = str(annotation)
    if "tuple" in text:
        element = text.split("tuple[", 1)[1]
        kind = float if element.startswith("float") else str if element.startswith("str") else int
        return kind, {"nargs": "+"}
    if text.startswith("bool"):
        return _parse_bool, {}
    if text.startswith("int"):
        return int, {}
    if text.startswith("float"):
        return float, {}
    return str, {}


def _parse_bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false; got {value!r}")


def add_config_arguments(parser: argparse.ArgumentParser, cls: type[JsonConfig], skip: tuple[str, ...] = ()) -> None:
    group = parser.add_argument_group(cls.__name__, (cls.__doc__ or "").strip().splitlines()[0])
    docs = field_docs(cls)
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        value_type, extra = _parser_for(field.type)
        default = field.default if field.default is not dataclasses.MISSING else None
        group.add_argument(
            f"--{field.name.replace('_', '-')}",
            dest=f"{cls.config_type}.{field.name}",
            metavar=field.name.upper(),
            type=value_type,
            default=argparse.SUPPRESS,
            help=f"{docs.get(field.name, '')} (default: {default!r})",
            **extra,
        )


def load_config_file(path: str | None) -> dict[str, Any]:
    """A YAML or JSON file: either flat ``field: value`` pairs or sections named after the config types."""
    if path is None:
        return {}
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"config file {file} does not exist")
    text = file.read_text()
    if file.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text) or {}
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"config file {file} must hold a mapping; got {type(data).__name__}")
    return data


def build_config(cls: type[JsonConfig], file_data: dict[str, Any], args: argparse.Namespace, **forced: Any) -> Any:
    """File values (flat or in a section named ``cls.config_type``), then ``--flag`` overrides, then ``forced``."""
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {k: v for k, v in file_data.items() if k in names}
    section = file_data.get(cls.config_type)
    if isinstance(section, dict):
        unknown = sorted(set(section) - names)
        if unknown:
            raise ValueError(f"unknown {cls.config_type} keys in config file: {unknown}; allowed: {sorted(names)}")
        values.update(section)
    prefix = f"{cls.config_type}."
    for key, value in vars(args).items():
        if key.startswith(prefix):
            values[key[len(prefix) :]] = tuple(value) if isinstance(value, list) else value
    values.update({k: v for k, v in forced.items() if v is not None})
    return cls(**values)
