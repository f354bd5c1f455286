"""What a saved artefact directory looks like: the manifest's file name and format, the files each kind must
hold, and how a directory is recognised as one (``artefact_kind``). Read-only and free of other adapter-fusion
imports, so that ``io`` (which refuses to write over a directory that is not an artefact) and ``manifest`` (which
writes and verifies manifests through ``io``) can both build on it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
FORMAT = "adapter-fusion"
FORMAT_VERSION = 1
KINDS = ("adapter", "fusion")
# files each kind must list: a manifest without them (e.g. an emptied "files") is refused
REQUIRED_FILES = {"adapter": ("adapter_config.json", "adapter.safetensors"), "fusion": ("fusion_config.json",)}


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The manifest of ``directory`` (None when it has none); refuses one that is not a valid manifest."""
    path = directory / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); the artefact is damaged") from None
    problems = []
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        problems.append(f"'format' is not {FORMAT!r}")
    elif manifest.get("kind") not in KINDS:
        problems.append(f"'kind' {manifest.get('kind')!r} is none of {list(KINDS)}")
    elif not isinstance(manifest.get("files"), dict) or not isinstance(manifest.get("base_model"), dict):
        problems.append("'files' or 'base_model' is missing")
    elif not isinstance(manifest.get("format_version"), int) or manifest["format_version"] > FORMAT_VERSION:
        problems.append(
            f"format_version {manifest.get('format_version')!r} is newer than this library reads ({FORMAT_VERSION}); "
            "upgrade adapter-fusion"
        )
    if problems:
        raise ValueError(f"{path} is not a valid adapter-fusion manifest: {problems[0]}")
    return manifest


def artefact_kind(directory: Path) -> str | None:
    """'adapter' or 'fusion' when ``directory`` is a saved artefact (by its manifest; for one saved before the
    manifest, by a layout of nothing but that kind's files), else None."""
    try:
        manifest = read_manifest(directory)
    except ValueError:
        return None
    if manifest is not None:
        return str(manifest["kind"])
    names = {path.name for path in directory.iterdir()}
    legacy = {
        "adapter": {"adapter_config.json", "adapter.safetensors", "head_config.json", "head.safetensors"},
        "fusion": {"fusion_config.json", "fusion.safetensors", "adapters", "heads"},
    }
    for kind, allowed in legacy.items():
        if set(REQUIRED_FILES[kind]) <= names <= allowed:
            return kind
    return None
