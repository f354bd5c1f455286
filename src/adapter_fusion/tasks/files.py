"""Reading the files of the data directory: the helpers every family's readers share.

A reader is a small frozen dataclass called with the file paths of one split (see each family's ``readers.py``).
The conventions they keep: a missing file raises ``FileNotFoundError`` naming it; a malformed line or record raises
``ValueError`` naming the file, the line (or record) number and what was expected; empty texts are errors, never
dropped silently. Files ending in ``.gz`` are gunzipped and a leading BOM is dropped. Nothing is cached: every call
re-reads the files.
"""

from __future__ import annotations

import ast
import gzip
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

Record = dict[str, Any]
"""One example as a reader returns it, in the schema of its task type."""


def check_paths(paths: Sequence[Path], reader: str, names: tuple[str, ...] = ("file",)) -> list[Path]:
    """Check the number of paths and that each exists; return them as ``Path`` objects."""
    if isinstance(paths, (str, Path)) or len(paths) != len(names):
        raise ValueError(f"{reader} reads {len(names)} file(s) ({', '.join(names)}); got {paths!r}")
    checked = [Path(path) for path in paths]
    for path in checked:
        if not path.is_file():
            raise FileNotFoundError(f"{reader}: data file {str(path)!r} does not exist")
    return checked


def open_text(path: Path) -> IO[str]:
    """Open a text file for reading (gunzipped when the name ends in ``.gz``; a leading BOM is dropped)."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return path.open(encoding="utf-8-sig", newline="")


def numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` pairs (1-based), without the line break."""
    with open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            yield number, line.rstrip("\r\n")


def aligned_lines(path: Path) -> list[str]:
    """The stripped lines of a line-aligned file; blank lines at the end are ignored, elsewhere they are errors."""
    lines = [line.strip() for _, line in numbered_lines(path)]
    while lines and not lines[-1]:
        lines.pop()
    for number, line in enumerate(lines, start=1):
        if not line:
            raise ValueError(f"{path}:{number}: empty line; expected one example per line")
    return lines


def non_empty(value: object, where: str, what: str) -> str:
    """``value`` stripped; it must be a non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: expected {what} as a non-empty string, got {value!r}")
    return value.strip()


def json_object(line: str, where: str, fields: tuple[str, ...], python_literal: bool = False) -> dict[str, Any]:
    """Parse one line holding a JSON object (or, with ``python_literal``, a Python dict literal) with ``fields``."""
    try:
        item = json.loads(line)
    except json.JSONDecodeError:
        if not python_literal:
            raise ValueError(f"{where}: expected a JSON object with fields {fields}, got {line[:200]!r}") from None
        try:
            item = ast.literal_eval(line)  # literals only: never eval
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise ValueError(
                f"{where}: expected a JSON object or Python dict literal with fields {fields}, got {line[:200]!r}"
            ) from None
    if not isinstance(item, dict) or any(field not in item for field in fields):
        raise ValueError(f"{where}: expected an object with fields {fields}, got {line[:200]!r}")
    return item
