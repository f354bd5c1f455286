"""Atomic file writes and safetensors save/load. Nothing half-written is ever left at the final path."""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from adapter_fusion.layout import MANIFEST, artefact_kind, read_manifest

logger = logging.getLogger(__name__)


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"missing file {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from None


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Save a flat state dict as safetensors, atomically (contiguous CPU copies, shared storage untied). The same
    tensors give the same bytes only with at most one ``metadata`` key (safetensors writes them in hash order)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"missing weights file {path}")
    try:
        return load_file(str(path))
    except SafetensorError as error:
        raise ValueError(f"{path} is not a readable safetensors file ({error}); it is damaged or cut off") from None


NAME_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
# leftovers of an interrupted directory swap, next to the artefact NAME: ".NAME.tmp-PID-XXXX" (a new version being
# written), ".NAME.old-PID-XXXX" (the previous version, moved aside for a moment); ".NAME.old" and
# ".NAME.XXXX.tmp" are the same from versions that did not record the process id
_LEFTOVER = re.compile(
    r"\.(?P<name>.+)\.(?:(?P<kind>tmp|old)-(?P<pid>\d+)-[A-Za-z0-9_]+|(?P<legacy>old|[A-Za-z0-9_]+\.tmp))"
)
_active: set[str] = set()  # leftovers of saves in progress in this process


def check_name(name: Any, what: str = "adapter name") -> str:
    """``name`` if it is a plain identifier that can safely become a file name (letters, digits, '-', '_', and
    '.' not leading; no separators), else ``ValueError``."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"{what} must be a plain identifier (letters, digits, '-', '_', '.' not leading, at most 128 "
            f"characters, no path separators); got {name!r}"
        )
    return name


def inside(directory: Path, relative: str, what: str) -> Path:
    """``directory / relative``, refused unless it stays inside ``directory`` (no absolute path, no '..', no
    symbolic link leading out, except from a Hub cache snapshot into its own repository folder's blobs)."""
    parts = Path(relative).parts
    path = directory / relative
    within = _is_within(path, directory) or _is_within(path, hub_snapshot_root(directory) or directory)
    if not parts or Path(relative).is_absolute() or ".." in parts or not within:
        raise ValueError(f"{what} points outside {directory}; an artefact may only reference files inside itself")
    return path


def hub_snapshot_root(directory: Path) -> Path | None:
    """The repository folder (``models--org--name``) when ``directory`` is a snapshot in the Hugging Face Hub
    cache: its files are links into that folder's ``blobs/``, which its artefact may therefore reference."""
    parent = Path(directory).absolute().parent
    if parent.name == "snapshots" and parent.parent.name.startswith("models--"):
        return parent.parent
    return None


def _is_within(path: Path, directory: Path) -> bool:
    resolved, root = path.resolve(), directory.resolve()
    return resolved == root or root in resolved.parents


def check_output(
    final: str | Path, kind: str, *, overwrite: bool = False, inputs: Iterable[str | Path] = ()
) -> Path:
    """Refuse an output path that would destroy something: ``final`` may be new (or an empty directory), or an
    existing ``kind`` artefact (recognised by its manifest) when ``overwrite``; never a file, another kind of
    directory (a parent folder of artefacts, a home directory), a symbolic link, or one of ``inputs`` (nor inside
    one, nor around one). Also checks that the path can be written. Returns ``final`` as a Path."""
    final = Path(final)
    recover_directory(final)
    for source in inputs:
        source = Path(source)
        if _is_within(final, source) or _is_within(source, final):
            raise ValueError(f"output {final} is, contains or lies inside {source}, an input of this run")
    if final.is_symlink():
        raise FileExistsError(f"output {final} is a symbolic link; give the real path of a new {kind} directory")
    if final.exists():
        if not final.is_dir():
            raise FileExistsError(f"output {final} is an existing file, not a {kind} directory; choose a new path")
        entries = sorted(p.name for p in final.iterdir())
        found = artefact_kind(final) if entries else kind
        if found != kind:
            shown = ", ".join(entries[:5]) + (f", ... {len(entries)} entries" if len(entries) > 5 else "")
            what = f"a saved {found}" if found else f"a directory that is not a saved {kind} (it holds {shown})"
            raise FileExistsError(
                f"output {final} is {what}; {_article(kind)} {kind} is only written to a new path or over a saved "
                f"{kind}"
            )
        if entries and not overwrite:
            raise FileExistsError(
                f"output {final} already holds a saved {kind}; pass overwrite=True (CLI: --overwrite) to replace it"
            )
        if entries:
            _check_only_manifest_files(final, kind)
    check_writable(final)
    return final


def check_apart(output: str | Path, runs: str | Path, what: str = "the training --output-dir") -> None:
    """Refuse an artefact path that is, contains or lies inside the Trainer's checkpoint directory ``runs`` (or
    another path the run writes, ``what``): the checkpoints would end up inside the artefact, or the artefact would
    be refused after training."""
    if _is_within(Path(output), Path(runs)) or _is_within(Path(runs), Path(output)):
        raise ValueError(f"--output {output} and {what} {runs} overlap; give them separate paths")


def check_outside_artefacts(path: str | Path, what: str) -> None:
    """Refuse a path the run writes besides its artefact (the Trainer's ``--output-dir``, a ``--metrics-file``)
    that is a saved adapter or fusion or lies inside one: the new files would break that artefact's manifest, or
    replace one of its files."""
    path = Path(path).resolve()
    for directory in (path, *path.parents):
        found = artefact_kind(directory) if directory.is_dir() else None
        if found:
            where = "is" if directory == path else f"lies inside {directory}, which is"
            raise FileExistsError(f"{what} {path} {where} a saved {found}; give a path outside saved artefacts")


def check_container(directory: str | Path) -> Path:
    """Refuse a directory meant to hold several artefacts (``directory/<name>``) when it is a file or itself a
    saved artefact (writing into it would corrupt that artefact)."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise FileExistsError(f"output {directory} is an existing file; give a directory to hold the adapters")
    found = artefact_kind(directory) if directory.is_dir() else None
    if found:
        raise FileExistsError(f"output {directory} is a saved {found}; give a directory to hold the adapters")
    check_writable(directory)
    return directory


def _check_only_manifest_files(final: Path, kind: str) -> None:
    """Refuse to replace an artefact holding files it was not saved with (the user's own files)."""
    manifest = read_manifest(final)
    if manifest is None:
        return  # saved before manifests: artefact_kind accepted only its own file names
    listed = set(manifest["files"]) | {MANIFEST}
    extra = sorted(p.relative_to(final).as_posix() for p in final.rglob("*") if p.is_file())
    extra = [name for name in extra if name not in listed]
    if extra:
        raise FileExistsError(
            f"output {final} is a saved {kind} that also holds files it was not saved with ({', '.join(extra[:3])}); "
            "move them out first"
        )


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"  # "an AdapterHub adapter"


def check_writable(final: str | Path) -> None:
    """Raise (``PermissionError``, ``NotADirectoryError``) if ``final`` could not be created, by creating a probe
    file in its nearest existing parent: an unnamed one (``O_TMPFILE``) where the system has them, so that even a
    kill at that instant leaves nothing behind."""
    final = Path(final).absolute()
    existing = final.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(f"cannot write {final}: {existing} is a file, not a directory")
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".adapter-fusion-probe-"):
            pass
    except OSError as error:
        raise PermissionError(f"cannot write {final}: {existing} is not writable ({error.strerror})") from None


def open_saved_directory(directory: Path, kind: str) -> None:
    """Recover an interrupted save of ``directory`` (``recover_directory``), then refuse a path that is a file or
    missing, naming it as the ``kind`` ("adapter", "fusion") directory a load expects."""
    recover_directory(directory)
    if directory.is_file():
        raise NotADirectoryError(
            f"{directory} is a file; a saved {kind} is a directory (give the folder it was saved to)"
        )
    if not directory.is_dir():
        raise FileNotFoundError(f"{kind} directory {directory} does not exist")


def recover_directory(final: str | Path) -> None:
    """Finish what an interrupted save of the directory ``final`` left: when ``final`` is missing, its previous
    version moved aside is put back; leftovers of saves whose process is gone are removed. Called before every
    save and load, so the artefact at ``final`` always loads (the previous or the new version, never nothing)."""
    final = Path(final)
    parent = final.parent
    if not parent.is_dir():
        return
    stale, waiting = [], False
    for path in parent.iterdir():
        match = _LEFTOVER.fullmatch(path.name)
        if match is None or match["name"] != final.name or os.path.abspath(path) in _active:
            continue
        if match["pid"] and int(match["pid"]) != os.getpid() and _alive(int(match["pid"])):
            waiting = waiting or match["kind"] == "old"  # another process is between its two renames
            continue
        stale.append((match["kind"] or ("old" if match["legacy"] == "old" else "tmp"), path))
    if waiting and not final.exists():
        for _ in range(200):  # the other save renames its new version into place within microseconds
            time.sleep(0.01)
            if final.exists():
                break
    backups = sorted((p for kind, p in stale if kind == "old" and p.is_dir()), key=lambda p: p.stat().st_mtime)
    if not final.exists() and not final.is_symlink() and backups:
        os.replace(backups[-1], final)
        logger.warning(f"{final}: restored the previous version from {backups[-1].name} (a save was interrupted)")
    for _, path in stale:
        if path.exists():
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            logger.info(f"removed {path}, left by an interrupted save")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def atomic_directory(
    final: str | Path, kind: str, *, overwrite: bool = False, inputs: Iterable[str | Path] = ()
) -> Iterator[Path]:
    """Yield a temporary sibling directory to write a ``kind`` artefact into; on success it takes the place of
    ``final`` (after ``check_output``). The previous version is moved aside, the new one renamed into place, then
    the previous one deleted: a crash at any instant leaves the previous or the new version loadable at ``final``
    (``recover_directory``, run by every load and save, puts a moved-aside version back)."""
    final = check_output(final, kind, overwrite=overwrite, inputs=inputs)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.tmp-{os.getpid()}-"))
    backup = final.with_name(f".{final.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
    active = {os.path.abspath(tmp), os.path.abspath(backup)}
    _active.update(active)
    try:
        yield tmp
        if final.exists():
            os.replace(final, backup)
            try:
                os.replace(tmp, final)
            except BaseException:
                os.replace(backup, final)  # an error (not a crash) between the renames: the previous version back
                raise
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        _active.difference_update(active)
    # the new version is in place: what is left of the previous one goes (or with the next save or load)
    shutil.rmtree(backup, ignore_errors=True)
