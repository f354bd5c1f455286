"""Save and load one adapter (+ its head) as a directory: JSON config and safetensors weights.

Layout of an adapter directory::

    adapter_config.json      adapter kind ("bottleneck" or "lora"; absent in files written before LoRA:
                             bottleneck), adapter config, geometry (hidden size, layers, model type), base
                             model, task
    adapter.safetensors      adapter weights
    head_config.json         head config with label names          (when a head is saved)
    head.safetensors         head weights                           (when a head is saved; empty, or absent,
                                                                     for a head without weights: causal_lm)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from adapter_fusion.adapters import adapter_config_from_dict, adapter_kind
from adapter_fusion.bank import resolve_artefact
from adapter_fusion.heads import HeadConfig
from adapter_fusion.io import atomic_directory, load_tensors, read_json, save_tensors, write_json

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
) -> Path:
    """Write adapter ``name`` (and head ``head`` if given) to ``directory`` atomically."""
    from adapter_fusion import __version__

    manager = model.adapters
    state = manager.adapter_state_dict(name)
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        write_json(
            tmp / ADAPTER_CONFIG,
            {
                "name": name,
                "adapter_kind": adapter_kind(manager.configs[name]),
                "adapter": manager.configs[name].to_dict(),
                "hidden_size": manager.hidden_size,
                "num_layers": manager.num_layers,
                "model_type": manager.model_type,
                "base_model": recorded_model_name(model.name_or_path),
                "causal_lm": model.is_causal_lm,
                "library_version": __version__,
                "metadata": metadata or {},
            },
        )
        save_tensors(tmp / ADAPTER_WEIGHTS, state, metadata={"format": "pt", "adapter": name})
        if head is not None:
            head_name = model._check_head(head)
            model.head_config(head_name).save(tmp / HEAD_CONFIG)
            save_tensors(tmp / HEAD_WEIGHTS, dict(model.heads[head_name].state_dict()), metadata={"format": "pt"})
    return directory


def recorded_model_name(name_or_path: str | None) -> str | None:
    """How a base model is recorded in saved files: 'default' for the bundled MiniLM and 'smollm2' for the bundled
    SmolLM2 (their paths differ per machine), else the Hub id or path as given."""
    from adapter_fusion.models.loading import default_model_path, smollm2_path

    if name_or_path == default_model_path():
        return "default"
    if name_or_path == smollm2_path():
        return "smollm2"
    return name_or_path


def base_model_arguments(info: dict[str, Any]) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments that rebuild the base model a saved adapter (or fusion) recorded:
    ``causal_lm=True`` when it was a causal LM (files written before this key existed: an encoder)."""
    return {"causal_lm": True} if info.get("causal_lm") else {}


def read_adapter_config(directory: str | Path) -> dict[str, Any]:
    """The ``adapter_config.json`` of an adapter directory (or ``bank:NAME``); for a PEFT LoRA directory, its name,
    kind, base model and PEFT config (``"format": "peft"``)."""
    from adapter_fusion.interop.peft import is_peft_directory, peft_adapter_info

    directory = resolve_artefact(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"adapter directory {directory} does not exist")
    if is_peft_directory(directory):
        return peft_adapter_info(directory)
    for required in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        if not (directory / required).is_file():
            present = sorted(p.name for p in directory.iterdir())
            raise FileNotFoundError(
                f"adapter directory {directory} is missing {required}; it holds {present or 'nothing'}"
            )
    info = read_json(directory / ADAPTER_CONFIG)
    missing = [key for key in ("name", "adapter", "hidden_size", "num_layers", "model_type") if key not in info]
    if missing:
        raise ValueError(f"{directory / ADAPTER_CONFIG} lacks the keys {missing}; is it an adapter-fusion adapter?")
    return info


def load_adapter(
    model: AdapterModel,
    directory: str | Path,
    name: str | None = None,
    *,
    load_head: bool = True,
    activate: bool = True,
) -> str:
    """Load an adapter directory (this library's, a PEFT LoRA directory, or ``bank:NAME``) into ``model``; returns
    the adapter's name in the model."""
    directory = resolve_artefact(directory)
    info = read_adapter_config(directory)
    if info.get("format") == "peft":
        from adapter_fusion.interop.peft import load_peft_adapter

        return load_peft_adapter(model, directory, name, activate=activate)
    manager = model.adapters
    if info["hidden_size"] != manager.hidden_size:
        raise ValueError(
            f"adapter at {directory} was trained for hidden size {info['hidden_size']}, "
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
    name = name or info["name"]
    config = adapter_config_from_dict(info["adapter"], info.get("adapter_kind"))
    weights = load_tensors(directory / ADAPTER_WEIGHTS)
    with_head = load_head and (directory / HEAD_CONFIG).is_file()
    if with_head and name in model.heads:
        raise ValueError(f"a head named {name!r} already exists in the model; load with another name")
    manager.add_adapter(name, config, activate=False)
    try:
        load_exact(manager.adapters[name], weights, f"adapter at {directory}")
        if with_head:
            head = model.add_head(name, HeadConfig.load(directory / HEAD_CONFIG), activate=False)
            load_exact(head, load_head_weights(head, directory / HEAD_WEIGHTS), f"head at {directory}")
    except Exception:
        # a failed load leaves the model as it was: no half-loaded adapter or head
        manager.remove_adapter(name)
        if with_head and name in model.heads:
            del model.heads[name]
        raise
    if activate:
        manager.set_active(name)
        if with_head:
            model.active_head = name
    return name


def load_head_weights(head: torch.nn.Module, path: Path) -> dict[str, torch.Tensor]:
    """The weights at ``path``; a head without weights (``causal_lm``) needs no file."""
    if not path.is_file() and not head.state_dict():
        return {}
    return load_tensors(path)


def load_exact(module: torch.nn.Module, weights: dict[str, torch.Tensor], what: str) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{what} does not fit this model: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}"
        )
    for key, tensor in weights.items():
        if tensor.shape != expected[key].shape:
            raise ValueError(
                f"{what}: weight {key!r} has shape {tuple(tensor.shape)}, "
                f"the model expects {tuple(expected[key].shape)}"
            )
    module.load_state_dict(weights, strict=True)
