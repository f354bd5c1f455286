"""Save and load a whole fusion setup as one directory, so a reloaded fusion computes exactly what was trained.

Layout::

    fusion_config.json        fusion config, adapter names (in order), temperature, geometry, base model,
                              heads, metadata
    fusion.safetensors        fusion weights
    adapters/<name>/          each fused adapter, as trained (joint training changes them), in the adapter format
    heads/<name>/             each task head: head_config.json + head.safetensors
    README.md                 model card: task, metrics, base model, fusion config, how to load it (``hub``)
    manifest.json             format version, base model identity, SHA-256 of every file (``manifest``)

AdapterHub users report reloaded fusions that lose accuracy (adapters issues #54, #188, #450, #477: adapters
reloaded under other names or re-initialised, heads missing, fusion weights silently not loaded). Here every
load is strict (exact key sets and shapes), the adapters travel inside the directory, their order is recorded,
and the manifest catches a file changed, removed or added after saving. Adapter and head names are plain
identifiers: a fusion only references files inside its own directory.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adapter_fusion.bank import resolve_artefact
from adapter_fusion.fusion.config import FusionConfig
from adapter_fusion.fusion.continual import continual_info, rebuild_extensions
from adapter_fusion.fusion.hierarchy import HierarchyConfig, add_hierarchy, hierarchy_info, restore_temperatures
from adapter_fusion.heads import HeadConfig
from adapter_fusion.hub import write_card
from adapter_fusion.io import (
    atomic_directory,
    check_name,
    inside,
    load_tensors,
    open_saved_directory,
    read_json,
    recover_directory,
    save_tensors,
    write_json,
)
from adapter_fusion.manifest import Opened, verify_artefact, write_manifest
from adapter_fusion.models.install import load_exact, load_head_weights
from adapter_fusion.models.saving import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    HEAD_CONFIG,
    HEAD_WEIGHTS,
    attach_adapter,
    check_adapter_config,
    model_identity,
    model_record,
    write_adapter_files,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from adapter_fusion.models.fusion_model import FusionModel

FUSION_CONFIG = "fusion_config.json"
FUSION_WEIGHTS = "fusion.safetensors"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def is_fusion_directory(directory: str | Path) -> bool:
    recover_directory(directory)  # an interrupted save may have left the fusion moved aside
    return (Path(directory) / FUSION_CONFIG).is_file()


def save_fusion(
    model: FusionModel,
    directory: str | Path,
    heads: Iterable[str] | None = None,
    metadata: dict[str, Any] | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``model``'s fusion, the adapters it fuses and ``heads`` (default: all) to ``directory`` atomically.

    ``directory`` must be new, or a saved fusion and ``overwrite=True``, and never one of the adapter directories
    the fusion was loaded from (see ``io.check_output``)."""
    fuse = model._require_fusion()
    head_names = list(model.heads) if heads is None else [model._check_head(h) for h in heads]
    for name in fuse.adapter_names:
        check_name(name)
    for head in head_names:
        check_name(head, "head name")
    inputs = fuse.config.adapter_paths if fuse.config is not None else ()
    fused = continual_info(fuse).get("base_adapter_names", fuse.adapter_names)  # the config's own adapters
    config = (fuse.config or FusionConfig()).replace(adapter_paths=(), adapter_names=tuple(fused))
    layers = list(fuse.fusion_layers().values())
    base = model_identity(model)
    directory = Path(directory)
    with atomic_directory(directory, "fusion", overwrite=overwrite, inputs=inputs) as tmp:
        save_tensors(tmp / FUSION_WEIGHTS, dict(fuse.state_dict()), metadata={"format": "pt"})
        for name in fuse.adapter_names:
            write_adapter_files(model, name, tmp / "adapters" / name, None, None, base)
        for head in head_names:
            head_dir = tmp / "heads" / head
            model.head_config(head).save(head_dir / HEAD_CONFIG)
            save_tensors(head_dir / HEAD_WEIGHTS, dict(model.heads[head].state_dict()), metadata={"format": "pt"})
        write_json(
            tmp / FUSION_CONFIG,
            {
                "fusion": config.to_dict(),
                "adapter_names": list(fuse.adapter_names),
                "points": sorted(fuse.layers.keys()),
                "temperature": layers[0].temperature if layers else config.temperature,
                "heads": head_names,
                "active_head": model.active_head if model.active_head in head_names else None,
                **model_record(model, metadata),
                **continual_info(fuse),
                **hierarchy_info(fuse),
            },
        )
        write_card(tmp)
        write_manifest(tmp, "fusion", base)
    return directory


def read_fusion_config(directory: str | Path, *, allow_modified: bool = False) -> dict[str, Any]:
    """The ``fusion_config.json`` of a saved fusion, after checking every file against its manifest."""
    return open_fusion(directory, allow_modified=allow_modified)[0]


def open_fusion(directory: str | Path, *, allow_modified: bool = False) -> Opened:
    """``(fusion config, manifest or None)``: an interrupted save is recovered first, every file is checked
    against the manifest (a fusion saved before manifests: its tensors against its recorded checksums), and every
    adapter and head it names must be a plain name inside the directory. ``directory``: a path or a Hub id."""
    directory = resolve_artefact(directory)
    open_saved_directory(directory, "fusion")
    if not (directory / FUSION_CONFIG).is_file():
        present = sorted(p.name for p in directory.iterdir())
        raise FileNotFoundError(f"{directory} is not a fusion directory: no {FUSION_CONFIG} (it holds {present})")
    manifest = verify_artefact(directory, "fusion", allow_modified=allow_modified)
    info = read_json(directory / FUSION_CONFIG)
    if not isinstance(info, dict) or not {"adapter_names", "heads", "fusion", "points"} <= set(info):
        raise ValueError(f"{directory / FUSION_CONFIG} lacks adapter_names, heads, fusion or points")
    for name in info["adapter_names"]:
        inside(directory, f"adapters/{check_name(name, f'adapter name in {directory / FUSION_CONFIG}')}", "adapter")
    for head in info["heads"]:
        inside(directory, f"heads/{check_name(head, f'head name in {directory / FUSION_CONFIG}')}", "head")
    if manifest is None:  # saved before manifests: the checksums it recorded for its tensors
        for relative, digest in info.get("checksums", {}).items():
            path = inside(directory, relative, f"checksummed file {relative!r} in {directory / FUSION_CONFIG}")
            if not path.is_file():
                raise FileNotFoundError(f"fusion directory {directory} is missing {relative}")
            if sha256(path) != digest:
                raise ValueError(f"{path} changed after the fusion was saved (checksum mismatch); re-save the fusion")
    return info, manifest


def restore_fusion(fusion_model: FusionModel, directory: Path, info: dict[str, Any]) -> FusionModel:
    """Rebuild on ``fusion_model`` (a fresh one on the recorded base model, see ``FusionModel.load_fusion``) what the
    fusion directory ``directory`` holds (``info``: its ``open_fusion`` config): the same adapters (by name and
    order), fusion, temperature and heads. Returns the model in eval mode."""
    manager = fusion_model.adapters
    if (info["hidden_size"], info["model_type"]) != (manager.hidden_size, manager.model_type):
        raise ValueError(
            f"fusion at {directory} was saved for a {info['model_type']!r} model of hidden size "
            f"{info['hidden_size']}; "
            f"the base model is a {manager.model_type!r} of hidden size {manager.hidden_size}"
        )
    for name in info["adapter_names"]:
        adapter_dir = directory / "adapters" / name
        for required in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
            if not (adapter_dir / required).is_file():
                raise FileNotFoundError(f"fusion directory {directory} is missing adapters/{name}/{required}")
        adapter_info = check_adapter_config(adapter_dir, read_json(adapter_dir / ADAPTER_CONFIG))
        attach_adapter(fusion_model, adapter_dir, adapter_info, name, load_head=False, activate=False)
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
