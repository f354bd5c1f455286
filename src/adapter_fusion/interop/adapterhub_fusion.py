"""An AdapterHub AdapterFusion directory into a ``FusionModel``: which adapters it fuses, and its fusion weights.

Apart from ``interop.adapterhub`` (the file readers, which the adapter loaders use) since it builds a fusion."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from adapter_fusion.fusion import Fuse, FusionConfig
from adapter_fusion.interop.adapterhub import read_adapterhub_fusion

if TYPE_CHECKING:
    from adapter_fusion.models.fusion_model import FusionModel


def adapterhub_fusion_adapters(
    directory: str | Path, adapter_paths: Sequence[str | Path] | None = None
) -> list[tuple[str, Path]]:
    """``(name, directory)`` of each adapter an AdapterFusion directory fuses: ``adapter_paths`` in its order, else
    the sibling directories named after them, as AdapterHub's ``save_all_adapters`` lays them out."""
    directory = Path(directory)
    names = read_adapterhub_fusion(directory)["adapter_names"]
    paths = [Path(p) for p in adapter_paths] if adapter_paths else [directory.parent / n for n in names]
    if len(paths) != len(names):
        raise ValueError(f"fusion at {directory} fuses {list(names)}; got {len(paths)} adapter_paths")
    missing = [str(p) for p in paths if not p.is_dir()]
    if missing:
        raise FileNotFoundError(f"fusion at {directory} fuses {list(names)}; no adapter directory at {missing}")
    return list(zip(names, paths))


def add_adapterhub_fusion(model: FusionModel, directory: str | Path) -> Fuse:
    """Add the fusion of an AdapterFusion directory to ``model``, which holds its adapters already (loaded by
    ``FusionModel.from_adapterhub`` from ``adapterhub_fusion_adapters``), with AdapterHub's weights."""
    directory = Path(directory)
    read = read_adapterhub_fusion(directory)
    fuse = model.add_fusion(FusionConfig(**read["settings"]))
    if set(read["weights"]) != set(fuse.layers):
        raise ValueError(
            f"fusion at {directory} has weights at {sorted(read['weights'])}; ours at {sorted(fuse.layers)}"
        )
    with torch.no_grad():
        for point, weights in read["weights"].items():
            layer = fuse.layers[point]
            for part in ("query", "key"):
                getattr(layer, part).weight.copy_(weights[f"{part}.weight"])
                getattr(layer, part).bias.copy_(weights[f"{part}.bias"])
            value = weights.get("value.weight")  # the 'static' preset has no value matrix: the identity
            layer.value.weight.copy_(value if value is not None else torch.eye(layer.hidden_size))
            layer.value.bias.zero_()
    return fuse
