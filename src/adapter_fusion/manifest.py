"""The manifest of a saved artefact (adapter or fusion directory): what it is, what it was saved with, and a
SHA-256 of every file in it, so that a changed, missing or added file, or another base model, is noticed on load.

``manifest.json``::

    {"format": "adapter-fusion", "format_version": 1, "kind": "adapter" | "fusion", "library_version": "0.1.0",
     "base_model": {"name": "default", "config_sha256": "...", "weights_sha256": "...", "dtype": "float32"},
     "files": {"adapter_config.json": "<sha256>", "adapter.safetensors": "<sha256>", ...}}

It is written last, so a directory with a manifest that verifies is complete. Artefacts saved before the manifest
existed load with a one-line note that they are unverified. The checksums catch accidents (a truncated copy, an
edited JSON, bytes overwritten); they are no signature: whoever can edit the files can also edit the manifest.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from adapter_fusion._version import __version__
from adapter_fusion.io import inside, write_json
from adapter_fusion.layout import FORMAT, FORMAT_VERSION, MANIFEST, REQUIRED_FILES, read_manifest

if TYPE_CHECKING:
    from torch import nn

logger = logging.getLogger(__name__)

# config keys that say nothing about the network's function (paths, versions, runtime switches)
VOLATILE_CONFIG_KEYS = frozenset({
    "architectures", "dtype", "torch_dtype", "transformers_version", "use_cache", "output_attentions",
    "output_hidden_states", "return_dict", "id2label", "label2id", "gradient_checkpointing", "name_or_path",
})  # fmt: skip
_noted_unverified: set[str] = set()
# ``(config, manifest or None)`` of an artefact whose files were checked (``open_adapter`` / ``open_fusion``); the
# loaders take it, so that one load (``evaluate``, ``FusionPipeline.from_pretrained``) hashes each file once
Opened = tuple[dict[str, Any], dict[str, Any] | None]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def base_identity(model: nn.Module, name: str | None) -> dict[str, Any]:
    """Name, config checksum and weights checksum of ``model``'s transformer body (the part adapters attach to;
    a causal LM's output layer is left out so that the same decoder loaded with or without it is the same base).

    The weights checksum is cached on the model until a tensor changes (``Tensor._version``)."""
    body = getattr(model, "body", model)
    state = body.state_dict()
    key = tuple((k, v.data_ptr(), v._version, str(v.dtype), tuple(v.shape)) for k, v in state.items())
    cached = getattr(model, "_base_identity_cache", None)
    if cached is None or cached[0] != key:
        digest = hashlib.sha256()
        for tensor_name in sorted(state):
            tensor = state[tensor_name].detach().cpu().contiguous().reshape(-1)
            digest.update(f"{tensor_name}:{tensor.dtype}:{tuple(state[tensor_name].shape)};".encode())
            digest.update(memoryview(tensor.view(torch.uint8).numpy()))
        object.__setattr__(model, "_base_identity_cache", (key, digest.hexdigest()))
        cached = model._base_identity_cache  # type: ignore[attr-defined]
    config = {
        k: v for k, v in body.config.to_diff_dict().items() if not k.startswith("_") and k not in VOLATILE_CONFIG_KEYS
    }
    dtypes = sorted({str(v.dtype).removeprefix("torch.") for v in state.values() if v.is_floating_point()})
    return {
        "name": name,
        "config_sha256": hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest(),
        "weights_sha256": cached[1],
        "dtype": ",".join(dtypes),
    }


def write_manifest(directory: Path, kind: str, base: dict[str, Any]) -> dict[str, Any]:
    """Checksum every file under ``directory`` and write ``manifest.json`` (atomically, as the last file)."""

    files = {
        path.relative_to(directory).as_posix(): file_sha256(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.relative_to(directory).as_posix() != MANIFEST
    }
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "library_version": __version__,
        "base_model": base,
        "files": files,
    }
    write_json(directory / MANIFEST, manifest)
    return manifest


def verify_artefact(directory: Path, kind: str, *, allow_modified: bool = False) -> dict[str, Any] | None:
    """Check every file of ``directory`` against its manifest; returns the manifest (None for an artefact saved
    before manifests, after a one-line note). A changed, missing or unlisted file raises ``ValueError`` naming it,
    unless ``allow_modified`` (then it is logged)."""
    manifest = read_manifest(directory)
    if manifest is None:
        format_version = _config_format_version(directory, kind)
        if format_version:
            _refuse_or_warn(f"{directory / MANIFEST} is missing (the {kind} was saved with one)", allow_modified)
        elif str(directory.resolve()) not in _noted_unverified:
            _noted_unverified.add(str(directory.resolve()))
            logger.warning(f"{kind} at {directory} was saved before artefacts had manifests: its files are unverified")
        return None
    if manifest["kind"] != kind:
        raise ValueError(f"{directory} holds a saved {manifest['kind']}, not a saved {kind}")
    files: dict[str, str] = manifest["files"]
    for required in REQUIRED_FILES[kind]:
        if required not in files:
            _refuse_or_warn(f"{directory / MANIFEST} does not list {required}", allow_modified)
    for relative, digest in sorted(files.items()):
        path = inside(directory, relative, f"file {relative!r} listed in {directory / MANIFEST}")
        if not path.is_file():
            _refuse_or_warn(f"{path} is missing (listed in the {kind}'s manifest)", allow_modified, FileNotFoundError)
        elif file_sha256(path) != digest:
            _refuse_or_warn(f"{path} changed after the {kind} was saved (checksum mismatch)", allow_modified)
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory).as_posix()
        if path.is_file() and relative != MANIFEST and relative not in files:
            _refuse_or_warn(f"{path} was added after the {kind} was saved (not in its manifest)", allow_modified)
    return manifest


def _config_format_version(directory: Path, kind: str) -> Any:
    """The ``format_version`` its config file records (configs written with a manifest have one)."""
    path = directory / REQUIRED_FILES[kind][0]
    try:
        return json.loads(path.read_text()).get("format_version") if path.is_file() else None
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return None


def _refuse_or_warn(problem: str, allow_modified: bool, error: type[Exception] = ValueError) -> None:
    if allow_modified:
        logger.warning(f"{problem}; loading it anyway (allow_modified)")
        return
    raise error(f"{problem}; pass allow_modified=True (CLI: --allow-modified) to load it anyway")


def check_base(
    saved: dict[str, Any] | None, current: dict[str, Any], what: str, *, allow_other_base: bool = False
) -> None:
    """Refuse to use an artefact saved on another base model (other weights or config) than ``current``, naming
    both, unless ``allow_other_base`` (then it is logged). ``saved`` None (no manifest): nothing to compare."""
    if saved is None:
        return
    differs = [part for part in ("weights", "config") if saved.get(f"{part}_sha256") != current[f"{part}_sha256"]]
    if not differs:
        return

    def describe(identity: dict[str, Any]) -> str:
        dtype = f", {identity['dtype']}" if identity.get("dtype") else ""
        weights = str(identity.get("weights_sha256"))[:12]
        return f"{identity.get('name') or 'an unnamed model'!r} (weights {weights}{dtype})"

    message = (
        f"{what} was saved on base model {describe(saved)}, but the base model here is {describe(current)}: "
        f"their {' and '.join(differs)} differ"
    )
    if allow_other_base:
        logger.warning(f"{message}; using it anyway (allow_other_base)")
        return
    raise ValueError(f"{message}; pass allow_other_base=True (CLI: --allow-other-base) to use it anyway")
