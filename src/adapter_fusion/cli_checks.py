"""The command line's error layer and the checks it runs before any model loads or trains.

Every failure ends in one line on stderr: user errors (bad values, files, paths, configs, corrupt weights) exit 2,
internal errors exit 1 with a hint to rerun with ``--debug`` (which prints the traceback), Ctrl-C exits 130 after
the trainer saved what it could.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1
EXIT_INTERRUPTED = 130


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
