"""Save and load a whole fusion setup as one directory, so a reloaded fusion computes exactly what was trained.

Layout::

    fusion_config.json        fusion config, adapter names (in order), temperature, geometry, base model,
                              heads, a SHA-256 of every stored weights file, metadata
    fusion.safetensors        fusion weights
    adapters/<name>/          each fused adapter, as trained (joint training changes them), in the adapter format
    heads/<name>/             each task head: head_config.json + head.safetensors

AdapterHub users report reloaded fusions that lose accuracy (adapters issues #54, #188, #450, #477: adapters
reloaded under other names or re-initialised, heads missing, fusion weights silently not loaded). Here every
load is strict (exact key sets and shapes), the adapters travel inside the directory, their order is recorded,
and checksums catch a file changed after saving.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adapter_fusion.fusion.config import FusionConfig
from adapter_fusion.fusion.continual import continual_info, rebuild_extensions
from adapter_fusion.fusion.hierarchy import HierarchyConfig, add_hierarchy, hierarchy_info, restore_temperatures
from adapter_fusion.heads import HeadConfig
from adapter_fusion.io import atomic_directory, load_tensors, read_json, save_tensors, write_json
from adapter_fusion.models.saving import (
    HEAD_CONFIG,
    HEAD_WEIGHTS,
    base_model_arguments,
    load_adapter,
    load_exact,
    load_head_weights,
    recorded_model_name,
    save_adapter,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from adapter_fusion.models.fusion_model import FusionModel

FUSION_CONFIG = "fusion_config.json"
FUSION_WEIGHTS = "fusion.safetensors"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def is_fusion_directory(directory: str | Path) -> bool:
    return (Path(directory) / FUSION_CONFIG).is_file()


def save_fusion(
    model: FusionModel,
    directory: str | Path,
    heads: Iterable[str] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write ``model``'s fusion, the adapters it fuses and ``heads`` (default: all) to ``directory`` atomically."""
    from adapter_fusion import __version__

    fuse = model._require_fusion()
    manager = model.adapters
    head_names = list(model.heads) if heads is None else [model._check_head(h) for h in heads]
    fused = continual_info(fuse).get("base_adapter_names", fuse.adapter_names)  # the config's own adapters
    config = (fuse.config or FusionConfig()).replace(adapter_paths=(), adapter_names=tuple(fused))
    layers = list(fuse.fusion_layers().values())
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        save_tensors(tmp / FUSION_WEIGHTS, dict(fuse.state_dict()), metadata={"format": "pt", "fusion": fuse.name})
        for name in fuse.adapter_names:
            save_adapter(model, name, tmp / "adapters" / name)
        for head in head_names:
            head_dir = tmp / "heads" / head
            model.head_config(head).save(head_dir / HEAD_CONFIG)
            save_tensors(head_dir / HEAD_WEIGHTS, dict(model.heads[head].state_dict()), metadata={"format": "pt"})
        checksums = {str(path.relative_to(tmp)): sha256(path) for path in sorted(tmp.rglob("*.safetensors"))}
        write_json(
            tmp / FUSION_CONFIG,
            {
                "fusion": config.to_dict(),
                "adapter_names": list(fuse.adapter_names),
                "points": sorted(fuse.layers.keys()),
                "temperature": layers[0].temperature if layers else config.temperature,
                "heads": head_names,
                "active_head": model.active_head if model.active_head in head_names else None,
                "hidden_size": manager.hidden_size,
                "num_layers": manager.num_layers,
                "model_type": manager.model_type,
                "base_model": recorded_model_name(model.name_or_path),
                "causal_lm": model.is_causal_lm,
                "library_version": __version__,
                "checksums": checksums,
                "metadata": metadata or {},
                **continual_info(fuse),
                **hierarchy_info(fuse),
            },
        )
    return directory


def read_fusion_config(directory: str | Path) -> dict[str, Any]:
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"fusion directory {directory} does not exist")
    if not (directory / FUSION_CONFIG).is_file():
        present = sorted(p.name for p in directory.iterdir())
        raise FileNotFoundError(f"{directory} is not a fusion directory: no {FUSION_CONFIG} (it holds {present})")
    info = read_json(directory / FUSION_CONFIG)
    for relative, digest in info.get("checksums", {}).items():
        path = directory / relative
        if not path.is_file():
            raise FileNotFoundError(f"fusion directory {directory} is missing {relative}")
        if sha256(path) != digest:
            raise ValueError(f"{path} changed after the fusion was saved (checksum mismatch); re-save the fusion")
    return info


def load_fusion(directory: str | Path, model: str | None = None) -> FusionModel:
    """A ``FusionModel`` rebuilt from ``directory``: same adapters (by name and order), fusion, temperature, heads."""
    from adapter_fusion.models.fusion_model import FusionModel

    directory = Path(directory)
    info = read_fusion_config(directory)
    fusion_model = FusionModel.from_pretrained(model or info.get("base_model"), **base_model_arguments(info))
    manager = fusion_model.adapters
    if (info["hidden_size"], info["model_type"]) != (manager.hidden_size, manager.model_type):
        raise ValueError(
            f"fusion at {directory} was saved for a {info['model_type']!r} model of hidden size "
            f"{info['hidden_size']}; "
            f"the base model is a {manager.model_type!r} of hidden size {manager.hidden_size}"
        )
    for name in info["adapter_names"]:
        load_adapter(fusion_model, directory / "adapters" / name, name, load_head=False, activate=False)
    base_names = info.get("base_adapter_names", info["adapter_names"])  # extended fusions: see fusion.continual
    config = FusionConfig.from_dict(info["fusion"]).replace(adapter_names=tuple(base_names))
    if "hierarchy" in info:  # see fusion.hierarchy
        fuse = add_hierarchy(fusion_model, HierarchyConfig.from_dict(info["hierarchy"]))
    else:
        fuse = fusion_model.add_fusion(config)
    if info.get("extensions"):
        fuse = rebuild_extensions(fusion_model, info["extensions"])
    if sorted(fuse.layers.keys()) != sorted(info["points"]):
        raise ValueError(f"rebuilt fusion has points {sorted(fuse.layers)}, the saved one {info['points']}")
    load_exact(fuse, load_tensors(directory / FUSION_WEIGHTS), f"fusion weights at {directory}")
    fuse.set_temperature(info["temperature"])
    restore_temperatures(fuse, info.get("layer_temperatures", {}))
    for head in info["heads"]:
        head_dir = directory / "heads" / head
        module = fusion_model.add_head(head, HeadConfig.load(head_dir / HEAD_CONFIG), activate=False)
        load_exact(module, load_head_weights(module, head_dir / HEAD_WEIGHTS), f"head {head!r} at {directory}")
    fusion_model.active_head = info.get("active_head") or (info["heads"][0] if info["heads"] else None)
    return fusion_model.eval()
