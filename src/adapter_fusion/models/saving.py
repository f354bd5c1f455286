"""Save and load one adapter (+ its head) as a directory: JSON config and safetensors weights.

Layout of an adapter directory::

    adapter_config.json      adapter kind ("bottleneck" or "lora"; absent in files written before LoRA:
                             bottleneck), adapter config, geometry (hidden size, layers, model type), base
                             model, task
    adapter.safetensors      adapter weights
    head_config.json         head config with label names          (when a head is saved)
    head.safetensors         head weights                           (when a head is saved; empty, or absent,
                                                                     for a head without weights: causal_lm)
    README.md                model card: task, metrics, base model, config, how to load it (``hub``)
    manifest.json            format version, base model identity, SHA-256 of every file (``manifest``)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from adapter_fusion._version import __version__
from adapter_fusion.adapters import adapter_config_from_dict, adapter_kind
from adapter_fusion.bank import resolve_artefact
from adapter_fusion.heads import HeadConfig
from adapter_fusion.hub import write_card
from adapter_fusion.interop.adapterhub import adapterhub_info, is_adapterhub_adapter, load_adapterhub_adapter
from adapter_fusion.interop.peft import is_peft_directory, load_peft_adapter, peft_adapter_info
from adapter_fusion.io import (
    atomic_directory,
    check_name,
    load_tensors,
    open_saved_directory,
    read_json,
    save_tensors,
    write_json,
)
from adapter_fusion.manifest import (
    FORMAT_VERSION,
    Opened,
    base_identity,
    check_base,
    verify_artefact,
    write_manifest,
)
from adapter_fusion.models.install import install_adapter, load_head_weights
from adapter_fusion.models.loading import default_model_path, smollm2_path

if TYPE_CHECKING:
    from adapter_fusion.models.model import AdapterModel

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter.safetensors"
HEAD_CONFIG = "head_config.json"
HEAD_WEIGHTS = "head.safetensors"


def save_adapter(
    model: AdapterModel,
    name: str,
    directory: str | Path,
    head: str | None = None,
    metadata: dict[str, Any] | None = None,
    *,
    overwrite: bool = False,
    record_name: str | None = None,
) -> Path:
    """Write adapter ``name`` (and head ``head`` if given) to ``directory`` atomically, with a manifest.

    ``directory`` must be new, or a saved adapter and ``overwrite=True`` (see ``io.check_output``); the previous
    version stays loadable until the new one is complete. ``record_name``: the name to record (default ``name``)."""
    directory = Path(directory)
    with atomic_directory(directory, "adapter", overwrite=overwrite) as tmp:
        write_adapter_files(
            model, name, tmp, head, metadata, model_identity(model), record_name=record_name, card=True
        )
    return directory


def model_identity(model: AdapterModel) -> dict[str, Any]:
    """The base model identity a manifest records (see ``manifest.base_identity``)."""
    return base_identity(model, recorded_model_name(model.name_or_path))


def model_record(model: AdapterModel, metadata: dict[str, Any] | None) -> dict[str, Any]:
    """What an adapter or fusion config records about the model it was saved from, and the format."""

    manager = model.adapters
    return {
        "hidden_size": manager.hidden_size,
        "num_layers": manager.num_layers,
        "model_type": manager.model_type,
        "base_model": recorded_model_name(model.name_or_path),
        "causal_lm": model.is_causal_lm,
        "library_version": __version__,
        "format_version": FORMAT_VERSION,
        "metadata": metadata or {},
    }


def write_adapter_files(
    model: AdapterModel,
    name: str,
    directory: Path,
    head: str | None,
    metadata: dict[str, Any] | None,
    base: dict[str, Any],
    record_name: str | None = None,
    card: bool = False,
) -> None:
    """The files of an adapter directory, manifest last, into the (new, not yet visible) ``directory``; ``card``:
    with a model card, ``README.md`` (``hub.render_card``; the adapters inside a fusion directory have none)."""
    manager = model.adapters
    state = manager.adapter_state_dict(name)
    config = manager.configs[name]
    record = {"name": check_name(record_name or name), "adapter_kind": adapter_kind(config)}
    record["adapter"] = config.to_dict()
    write_json(directory / ADAPTER_CONFIG, {**record, **model_record(model, metadata)})
    save_tensors(directory / ADAPTER_WEIGHTS, state, metadata={"format": "pt"})
    if head is not None:
        head_name = model._check_head(head)
        model.head_config(head_name).save(directory / HEAD_CONFIG)
        save_tensors(directory / HEAD_WEIGHTS, dict(model.heads[head_name].state_dict()), metadata={"format": "pt"})
    if card:
        write_card(directory)
    write_manifest(directory, "adapter", base)


def recorded_model_name(name_or_path: str | None) -> str | None:
    """How a base model is recorded in saved files: 'default' for the bundled MiniLM and 'smollm2' for the bundled
    SmolLM2 (their paths differ per machine), else the Hub id or path as given."""
    if name_or_path == default_model_path():
        return "default"
    if name_or_path == smollm2_path():
        return "smollm2"
    return name_or_path


def base_model_arguments(info: dict[str, Any]) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments that rebuild the base model a saved adapter (or fusion) recorded:
    ``causal_lm=True`` when it was a causal LM (files written before this key existed: an encoder)."""
    return {"causal_lm": True} if info.get("causal_lm") else {}


def read_adapter_config(directory: str | Path, *, allow_modified: bool = False) -> dict[str, Any]:
    """The ``adapter_config.json`` of an adapter directory (or ``bank:NAME``), after checking every file against
    its manifest; for a PEFT LoRA directory, its name, kind, base model and PEFT config (``"format": "peft"``)."""
    return open_adapter(directory, allow_modified=allow_modified)[0]


def open_adapter(directory: str | Path, *, allow_modified: bool = False) -> Opened:
    """``(adapter config, manifest or None)`` of a saved adapter: an interrupted save is recovered first, then
    every file is checked against the manifest (``allow_modified``: a mismatch is only logged)."""
    directory = resolve_artefact(directory)
    open_saved_directory(directory, "adapter")
    if is_peft_directory(directory):
        return peft_adapter_info(directory), None
    if is_adapterhub_adapter(directory):
        return adapterhub_info(directory), None
    for required in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        if not (directory / required).is_file():
            present = sorted(p.name for p in directory.iterdir())
            raise FileNotFoundError(
                f"adapter directory {directory} is missing {required}; it holds {present or 'nothing'}"
            )
    manifest = verify_artefact(directory, "adapter", allow_modified=allow_modified)
    return check_adapter_config(directory, read_json(directory / ADAPTER_CONFIG)), manifest


def check_adapter_config(directory: Path, info: Any) -> dict[str, Any]:
    if not isinstance(info, dict):
        raise ValueError(f"{directory / ADAPTER_CONFIG} must hold a JSON object; got {type(info).__name__}")
    missing = [key for key in ("name", "adapter", "hidden_size", "num_layers", "model_type") if key not in info]
    if missing:
        raise ValueError(f"{directory / ADAPTER_CONFIG} lacks the keys {missing}; is it an adapter-fusion adapter?")
    check_name(info["name"], f"adapter name in {directory / ADAPTER_CONFIG}")
    return info


def load_adapter(
    model: AdapterModel,
    directory: str | Path,
    name: str | None = None,
    *,
    load_head: bool = True,
    activate: bool = True,
    allow_modified: bool = False,
    allow_other_base: bool = False,
    opened: Opened | None = None,
) -> str:
    """Load an adapter directory (this library's, a PEFT LoRA directory, or ``bank:NAME``) into ``model``; returns
    the adapter's name in the model.

    Refused (``ValueError`` naming the file) when a file differs from the adapter's manifest, unless
    ``allow_modified``; refused when the adapter was saved on another base model than ``model``'s, unless
    ``allow_other_base``. ``opened``: what ``open_adapter(directory)`` returned to a caller that has already
    checked the files (they are not hashed again)."""
    directory = resolve_artefact(directory)
    if is_adapterhub_adapter(directory):  # AdapterHub ``adapters`` files: no manifest, mapped on loading
        return load_adapterhub_adapter(model, directory, name, load_head=load_head, activate=activate)
    info, manifest = opened if opened is not None else open_adapter(directory, allow_modified=allow_modified)
    if info.get("format") == "peft":
        return load_peft_adapter(model, directory, name, activate=activate)
    check_geometry(model, directory, info)  # the plainer message first: another size or architecture
    if manifest is not None:
        check_base(
            manifest["base_model"], model_identity(model), f"adapter at {directory}", allow_other_base=allow_other_base
        )
    return attach_adapter(model, directory, info, name, load_head=load_head, activate=activate)


def attach_adapter(
    model: AdapterModel,
    directory: Path,
    info: dict[str, Any],
    name: str | None = None,
    *,
    load_head: bool = True,
    activate: bool = True,
) -> str:
    """Add the adapter (and head) whose files are in ``directory`` (already verified) to ``model``."""
    check_geometry(model, directory, info)
    name = check_name(name or info["name"])
    config = adapter_config_from_dict(info["adapter"], info.get("adapter_kind"))
    weights = load_tensors(directory / ADAPTER_WEIGHTS)
    with_head = load_head and (directory / HEAD_CONFIG).is_file()
    return install_adapter(
        model, name, config, weights, HeadConfig.load(directory / HEAD_CONFIG) if with_head else None,
        lambda head: load_head_weights(head, directory / HEAD_WEIGHTS), activate=activate, where=directory,
    )  # fmt: skip


def check_geometry(model: AdapterModel, directory: Path, info: dict[str, Any]) -> None:
    """Refuse an adapter saved for another hidden size, architecture or layer count than ``model``'s."""
    manager = model.adapters
    if info["hidden_size"] != manager.hidden_size:
        raise ValueError(
            f"adapter at {directory} was trained for hidden size {info['hidden_size']!r}, "
            f"but the model has hidden size {manager.hidden_size}"
        )
    if info["model_type"] != manager.model_type:
        raise ValueError(
            f"adapter at {directory} holds weights for a {info['model_type']!r} model, "
            f"but the model is a {manager.model_type!r}"
        )
    if info["num_layers"] != manager.num_layers:
        raise ValueError(
            f"adapter at {directory} was trained for {info['num_layers']} layers, the model has {manager.num_layers}"
        )
