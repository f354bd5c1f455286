"""Hugging Face Hub conventions: a model card (``README.md``) in every saved adapter and fusion, Hub ids accepted
wherever a saved artefact is (``org/name`` or ``hf://org/name``, optionally ``@revision``). Uploading is
``adapter_fusion.hub_upload.push_to_hub``, apart from this module because it re-opens saved artefacts, whose loaders
build on this one.

A Hub id is resolved by ``bank.resolve_artefact``, the one place every loader goes through: a string that is not
an existing path, nor ``bank:NAME``, and has the form of a repository id becomes the local snapshot directory that
``huggingface_hub.snapshot_download`` gives (under ``HF_HUB_OFFLINE=1``: the Hub cache only, no network). The card
is written by the save functions, before the manifest, so the manifest checksums it like every other file.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from adapter_fusion.io import atomic_write_text, read_json

HUB_PREFIX = "hf://"
CARD = "README.md"
PLACEHOLDER = "path/to/this-directory"
# a Hub repository id: "org/name" (letters, digits, '-', '_', '.'), optionally "@revision"
REPO_ID = re.compile(r"(?P<repo>[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95})(?:@(?P<revision>[\w./-]+))?")
# keys of recorded metrics that are no score (timings, counters)
_NOT_SCORES = ("epoch", "runtime", "per_second", "seconds", "step", "examples", "loss")
ACCEPTED = "a local adapter or fusion directory, bank:NAME, or a Hub id (org/name or hf://org/name) reachable online"


def is_hub_reference(reference: object) -> bool:
    """Whether ``reference`` names a Hub repository: ``hf://...``, or an ``org/name`` string that is no existing
    path (a ``Path`` object is always a path)."""
    if not isinstance(reference, str):
        return False
    if reference.startswith(HUB_PREFIX):
        return True
    return REPO_ID.fullmatch(reference) is not None and not os.path.lexists(reference)


def _offline() -> bool:
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE")
    return value.upper() in ("1", "ON", "YES", "TRUE") if value is not None else bool(constants.HF_HUB_OFFLINE)


def resolve_hub(reference: str) -> Path:
    """The local snapshot directory of Hub reference ``reference`` (downloaded when online and not cached).

    ``$HF_HUB_CACHE`` and ``$HF_HUB_OFFLINE`` are read at each call. A reference found neither online nor in the
    cache raises ``FileNotFoundError`` naming it and what is accepted."""
    from huggingface_hub import snapshot_download

    match = REPO_ID.fullmatch(reference.removeprefix(HUB_PREFIX))
    if match is None:
        raise ValueError(f"{reference!r} is not a Hub id of the form org/name[@revision]; give {ACCEPTED}")
    offline = _offline()
    try:
        path = snapshot_download(
            match["repo"], revision=match["revision"], cache_dir=os.environ.get("HF_HUB_CACHE") or None,
            local_files_only=offline,
        )  # fmt: skip
    except Exception as error:  # huggingface_hub raises many kinds (not found, offline, HTTP, validation)
        where = "in the Hub cache (HF_HUB_OFFLINE is set)" if offline else "on the Hub or in its cache"
        reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
        raise FileNotFoundError(
            f"{reference!r} is no local path and was not found {where} ({reason}); give {ACCEPTED} or in the Hub cache"
        ) from None
    return Path(path)


# ------------------------------------------------------------------------------------------------- the card
def _scores(metrics: Any) -> dict[str, float]:
    if not isinstance(metrics, dict):
        return {}
    return {
        key: value
        for key, value in metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not any(k in key for k in _NOT_SCORES)
    }


def _summary(values: dict[str, Any]) -> str:
    shown = {key: value for key, value in sorted(values.items()) if key != "library_version" and value is not None}
    return ", ".join(f"{key}={json.dumps(value)}" for key, value in shown.items())


def render_card(directory: Path, repo_id: str | None = None) -> str:
    """The model card of the saved adapter or fusion whose config files are in ``directory``."""
    fusion = (directory / "fusion_config.json").is_file()
    info = read_json(directory / ("fusion_config.json" if fusion else "adapter_config.json"))
    metadata = info.get("metadata") or {}
    bank_card = metadata.get("card") if isinstance(metadata.get("card"), dict) else {}
    heads = (
        [directory / "head_config.json"]
        if not fusion
        else [directory / "heads" / str(head) / "head_config.json" for head in info.get("heads", [])]
    )
    head_tasks = [read_json(path).get("task") for path in heads if path.is_file()]
    task = metadata.get("task") or bank_card.get("task") or ", ".join(t for t in head_tasks if t) or None
    metrics = _scores(bank_card.get("dev")) or _scores(metadata.get("metrics"))
    base = info.get("base_model")
    base_shown = {"default": "default (the bundled all-MiniLM-L6-v2)", "smollm2": "smollm2 (the bundled SmolLM2)"}
    reference = repo_id or PLACEHOLDER
    front = ["---", "library_name: adapter-fusion", "tags:", "- adapter-fusion", "- adapters"]
    front += ["- adapter-fusion-fusion"] if fusion else [f"- {info.get('adapter_kind') or 'bottleneck'}-adapter"]
    if isinstance(base, str) and REPO_ID.fullmatch(base):
        front.append(f"base_model: {base}")
    front.append("---")
    title = "fusion" if fusion else f"adapter `{info.get('name')}`"
    lines = [*front, "", f"# adapter-fusion {title}", ""]
    lines.append(f"- task: `{task}`" if task else "- task: not recorded")
    if metrics:
        split = (bank_card.get("dev") or {}).get("split") or metadata.get("metrics", {}).get("split") or "dev"
        lines.append(f"- metrics ({split}): " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items())))
    else:
        lines.append("- metrics: not recorded")
    lines.append(f"- base model: `{base_shown.get(base, base)}` ({info.get('model_type')}, hidden size "
                 f"{info.get('hidden_size')}, {info.get('num_layers')} layers)")  # fmt: skip
    if fusion:
        config = info.get("fusion") or {}
        lines.append(
            f"- fusion: method `{config.get('fusion_method')}` over adapters "
            f"{', '.join(f'`{n}`' for n in info.get('adapter_names', []))} at {len(info.get('points', []))} "
            f"points, temperature {info.get('temperature')}; heads: {', '.join(info.get('heads', []))}"
        )
        lines.append(f"- fusion config: {_summary(config)}")
    else:
        lines.append(f"- adapter ({info.get('adapter_kind') or 'bottleneck'}): {_summary(info.get('adapter') or {})}")
        head = directory / "head_config.json"
        if head.is_file():
            lines.append(f"- head: {_summary(read_json(head))}")
    lines.append(f"- saved with adapter-fusion {info.get('library_version')}; every file is checksummed in "
                 "`manifest.json`, checked on load")  # fmt: skip
    python = (
        ["from adapter_fusion import FusionPipeline", f'pipeline = FusionPipeline.from_pretrained("{reference}")',
         'print(pipeline.predict("an example input"))']
    )  # fmt: skip
    cli = [f'adapter-fusion predict --adapter {reference} "an example input"']
    if task:
        cli.append(f"adapter-fusion evaluate --adapter {reference} --task {task}")
    lines += ["", "## How to load it", "", "With adapter-fusion installed:", "",
              "```python", *python, "```", "", "```bash", *cli, "```", ""]  # fmt: skip
    if not fusion:
        lines += ["Into a model of your own: `load_adapter(AdapterModel.from_pretrained(BASE), "
                  f'"{reference}")`.', ""]  # fmt: skip
    if repo_id is None:
        lines += [f"`{PLACEHOLDER}` is this directory, or the Hub id it was pushed to.", ""]
    return "\n".join(lines)


def write_card(directory: Path, repo_id: str | None = None) -> None:
    """Write ``directory/README.md``; called by the save functions before the manifest."""
    atomic_write_text(directory / CARD, render_card(directory, repo_id))
