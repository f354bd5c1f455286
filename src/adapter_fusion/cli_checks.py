"""The command line's error layer and the checks it runs before any model loads or trains.

Every failure ends in one line on stderr: user errors (bad values, files, paths, configs, corrupt weights) exit 2,
internal errors exit 1 with a hint to rerun with ``--debug`` (which prints the traceback), Ctrl-C exits 130 after
the trainer saved what it could.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1
EXIT_INTERRUPTED = 130


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors in one line (``PROG: error: MESSAGE``, exit 2), not after the usage block that
    ``--help`` prints; subcommands' parsers are of this class too (``add_subparsers`` takes the parent's). Options
    are never abbreviated: ``--scal 2`` is an unknown option (with a did-you-mean), not ``--scaling 2``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def subcommand_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    """The parser of subcommand ``command`` of ``parser``."""
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]  # noqa: SLF001
    return actions[0].choices[command] if actions else parser


def unknown_options_message(parser: argparse.ArgumentParser, unknown: list[str]) -> str:
    """``unrecognized arguments: ...`` with a did-you-mean for the first unknown ``--option`` among ``parser``'s."""
    from adapter_fusion.config import did_you_mean

    message = f"unrecognized arguments: {' '.join(unknown)}"
    option = next((word.split("=", 1)[0] for word in unknown if word.startswith("--")), None)
    if option is None:
        return message
    return message + did_you_mean(option, [o for o in parser._option_string_actions if o.startswith("--")])


def user_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the input is wrong, not the program. ``TypeError`` and ``KeyError`` are among them:
    the library raises them for values of the wrong type and for unknown names (tasks, heads, adapters), each
    with a message naming what was received and what is allowed. ``OSError`` covers missing, unreadable and
    unwritable paths and unreachable hosts."""
    kinds: list[type[BaseException]] = [ValueError, TypeError, KeyError, OSError]
    try:
        import yaml

        kinds.append(yaml.YAMLError)
    except ImportError:  # pragma: no cover - yaml is a dependency
        pass
    try:
        from safetensors import SafetensorError

        kinds.append(SafetensorError)
    except ImportError:  # pragma: no cover - safetensors is a dependency
        pass
    return tuple(kinds)


def one_line(error: BaseException) -> str:
    """The error's message on one line (a ``KeyError``'s message without the quotes ``str`` adds)."""
    message = error.args[0] if isinstance(error, KeyError) and error.args else error
    text = " ".join(str(message).split())
    if type(error).__name__ == "SafetensorError":
        return f"a safetensors weights file is truncated or corrupt: {text}"
    if isinstance(error, OSError) and not text and error.strerror:
        return " ".join(f"{error.strerror}: {error.filename or ''}".split())
    return text or type(error).__name__


def check_writable_directory(path: str | Path, what: str) -> None:
    """Refuse, before training, a directory output that cannot be created or written (a read-only parent, a
    file on the way), so that a long run is never lost at the final save."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing != path and not existing.is_dir():
        raise NotADirectoryError(f"{what} {str(path)!r}: {str(existing)!r} is a file, so the directory cannot be made")
    if existing == path and not path.is_dir():
        raise NotADirectoryError(f"{what} {str(path)!r} is a file, not a directory")
    _probe(existing, what, path)


def check_writable_file(path: str | Path, what: str) -> None:
    """Refuse, before training, a file output that is a directory or whose directory cannot be written."""
    path = Path(path)
    if path.is_dir():
        example = str(path / "metrics.json")
        raise IsADirectoryError(f"{what} {str(path)!r} is a directory; give a file path such as {example!r}")
    if path.exists() and not os.access(path, os.W_OK):
        raise PermissionError(f"{what} {str(path)!r} is not writable")
    check_writable_directory(path.parent if str(path.parent) else Path("."), f"{what} {str(path)!r}: directory")


def _probe(directory: Path, what: str, path: Path) -> None:
    """Create and remove a temporary file in ``directory`` (``os.access`` is wrong for root and some mounts)."""
    try:
        handle, name = tempfile.mkstemp(prefix=".adapter-fusion-write-test-", dir=directory)
    except OSError as error:
        raise PermissionError(
            f"{what} {str(path)!r}: cannot write in {str(directory)!r} ({error.strerror or error})"
        ) from None
    os.close(handle)
    os.unlink(name)


def interrupted_message(interrupt: KeyboardInterrupt) -> str:
    checkpoint: Any = getattr(interrupt, "checkpoint", None)
    if checkpoint:
        return (
            f"interrupted; saved a checkpoint of the last finished step to {checkpoint} (continue with "
            "--resume-from-checkpoint last and the same --output-dir)"
        )
    return "interrupted; nothing was saved"
