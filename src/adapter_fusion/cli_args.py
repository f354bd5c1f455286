"""Build argparse options from the config dataclasses: one ``--field`` per field, help from its docstring."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import textwrap
from collections.abc import Hashable
from functools import cache
from pathlib import Path
from typing import Any

from adapter_fusion.config import JsonConfig, check_known_keys, did_you_mean


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


def add_config_arguments(
    parser: argparse.ArgumentParser, cls: type[JsonConfig], skip: tuple[str, ...] = (), prefix: str = ""
) -> None:
    """One ``--PREFIX-field`` option per field of ``cls`` (``prefix`` keeps two configs' like-named fields apart;
    nested configs left out), then one group per class of options its constructor also takes (e.g. each
    registered fusion method's settings), all collected under ``cls``."""
    _add_group(parser, cls, cls.__name__, cls.config_type, skip + cls.nested_fields, prefix)
    for title, option_class in cls.option_classes():
        _add_group(parser, option_class, f"{cls.__name__}, {title}", cls.config_type, skip, prefix)


def _add_group(
    parser: argparse.ArgumentParser,
    cls: type[JsonConfig],
    title: str,
    config_type: str,
    skip: tuple[str, ...],
    prefix: str,
) -> None:
    group = parser.add_argument_group(title, (cls.__doc__ or "").strip().splitlines()[0])
    docs = field_docs(cls)
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        value_type, extra = _parser_for(field.type)
        default = field.default if field.default is not dataclasses.MISSING else None
        group.add_argument(
            f"--{prefix}{field.name.replace('_', '-')}",
            dest=f"{config_type}.{field.name}",
            metavar=field.name.upper(),
            type=value_type,
            default=argparse.SUPPRESS,
            help=f"{docs.get(field.name, '')} (default: {default!r})",
            **extra,
        )


def _unique_keys(pairs: list[tuple[str, Any]], file: Path) -> dict[str, Any]:
    """A JSON object, refusing a key given twice (``json`` would keep the last one without a word)."""
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise ValueError(f"config file {file}: key {key!r} is given twice in one object; keep one")
        data[key] = value
    return data


def _unique_key_loader() -> type:
    """``yaml.SafeLoader`` refusing a key given twice in one mapping (PyYAML keeps the last one without a word)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            first: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if isinstance(key, Hashable) and key in first:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} is given twice (first at line {first[key]}); keep one",
                        key_node.start_mark,
                    )  # fmt: skip
                if isinstance(key, Hashable):
                    first[key] = key_node.start_mark.line + 1
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def load_config_file(path: str | None) -> dict[str, Any]:
    """A YAML or JSON file: either flat ``field: value`` pairs or sections named after the config types."""
    if path is None:
        return {}
    file = Path(path)
    if file.is_dir():
        raise IsADirectoryError(f"config file {file} is a directory; give a YAML or JSON file")
    if not file.is_file():
        raise FileNotFoundError(f"config file {file} does not exist")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"config file {file} is not UTF-8 text: {error.reason} at byte {error.start}") from None
    if file.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.load(text, Loader=_unique_key_loader()) or {}  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise ValueError(f"config file {file}: invalid YAML{where}: {problem}") from None
    else:
        try:
            data = json.loads(text, object_pairs_hook=lambda pairs: _unique_keys(pairs, file))
        except json.JSONDecodeError as error:
            raise ValueError(
                f"config file {file}: invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}"
            ) from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {file} must hold a mapping; got {type(data).__name__}")
    return data


def check_config_file(file_data: dict[str, Any], classes: tuple[type[JsonConfig], ...], *extra: str) -> None:
    """Refuse a key of the config file that no config of the subcommand has (``extra``: the subcommand's own keys
    such as ``task``), and a section that is not one of its configs, with a did-you-mean."""
    sections = {cls.config_type for cls in classes}
    flat = {name for cls in classes for name in _option_names(cls)} | set(extra)
    for key, value in file_data.items():
        if key in sections:
            if not isinstance(value, dict):
                raise ValueError(f"config file: section {key!r} must be a mapping of fields; got {value!r}")
        elif key not in flat:
            kind = "section" if isinstance(value, dict) else "key"
            raise ValueError(
                f"config file: unknown {kind} {key!r}{did_you_mean(str(key), flat | sections)} (sections: "
                f"{', '.join(sorted(sections))}; keys: {', '.join(sorted(extra))} and the fields of those sections, "
                "as listed by --help)"
            )


def _option_names(cls: type[JsonConfig]) -> set[str]:
    """What a config file or flag may set for ``cls``: its fields (not nested configs) and its options."""
    classes = [cls] + [option_class for _, option_class in cls.option_classes()]
    return {f.name for c in classes for f in dataclasses.fields(c) if f.name not in cls.nested_fields}


def build_config(cls: type[JsonConfig], file_data: dict[str, Any], args: argparse.Namespace, **forced: Any) -> Any:
    """File values (flat or in a section named ``cls.config_type``), then ``--flag`` overrides, then ``forced``.

    A value the user gave (in the file or as a flag) for a field the resulting config does not read (e.g.
    ``--num-attention-heads`` with ``--method weighted``) is an error."""
    names = _option_names(cls)
    values: dict[str, Any] = {k: v for k, v in file_data.items() if k in names}
    given = {k: f"{k} (config file)" for k in values}
    section = file_data.get(cls.config_type)
    if isinstance(section, dict):
        check_known_keys(f"config file section {cls.config_type!r}", section, names)
        values.update(section)
        given.update({k: f"{cls.config_type}.{k} (config file)" for k in section})
    prefix = f"{cls.config_type}."
    for key, value in vars(args).items():
        if key.startswith(prefix):
            values[key[len(prefix) :]] = tuple(value) if isinstance(value, list) else value
            given[key[len(prefix) :]] = f"--{key[len(prefix):].replace('_', '-')}"
    values.update({k: v for k, v in forced.items() if v is not None})
    for field, why in cls.inapplicable_options(values).items():
        if field in given and field not in forced:
            raise ValueError(f"{given[field]}={values[field]!r} does not apply: {why}")
    config = cls(**values)
    for field, why in config.inapplicable_fields().items():
        if field in given and field not in forced:
            raise ValueError(f"{given[field]}={values[field]!r} does not apply: {why}")
    return config


def build_kind_config(
    kinds: dict[str, tuple[type[JsonConfig], str]], kind: str, file_data: dict[str, Any], args: argparse.Namespace
) -> Any:
    """``build_config`` for the config class of ``kind`` in ``kinds`` (kind -> (config class, its flags' prefix),
    e.g. ``{"bottleneck": (AdapterConfig, ""), "lora": (LoraConfig, "lora-")}``); a flag, config-file key or
    section that only another kind's config has is an error."""
    if kind not in kinds:
        raise ValueError(f"adapter kind must be one of {', '.join(map(repr, kinds))}; got {kind!r}")
    chosen = kinds[kind][0]
    own = {f.name for f in dataclasses.fields(chosen)}
    for other, prefix in kinds.values():
        if other is chosen:
            continue
        flags = [key.split(".", 1)[1] for key in vars(args) if key.startswith(other.config_type + ".")]
        given = [f"--{prefix}{name.replace('_', '-')}" for name in flags]
        given += [f"{key} (config file)" for key in file_data if key == other.config_type]
        given += [f"{f.name} (config file)" for f in dataclasses.fields(other) if f.name in file_data.keys() - own]
        if given:
            raise ValueError(
                f"{', '.join(given)} set a field of {other.__name__}, which does not apply to adapter kind {kind!r}"
            )
    return build_config(chosen, file_data, args)
