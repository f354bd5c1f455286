"""Adapter points: their names (``"3_ffn"``, ``"3_attention_self_query"``) and the adapter modules built at them.

Every layer has two bottleneck points, the attention and feed-forward sub-layer outputs (``LOCATIONS``); a LoRA
adapter adds a point per linear layer it adapts (see ``AdapterManager``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from torch import nn

from adapter_fusion.adapters import AdapterConfig, BottleneckAdapter, LoraAdapter, LoraConfig
from adapter_fusion.models.specs import layer_modules, linear_features, linear_modules, location_of

if TYPE_CHECKING:
    from adapter_fusion.models.manager import AdapterManager

LOCATIONS = ("attention", "ffn")


def point_key(layer: int, location: str) -> str:
    return f"{layer}_{location}"


def split_point_key(key: str) -> tuple[int, str]:
    """``"3_attention_self_query"`` -> ``(3, "attention_self_query")``."""
    layer, location = key.split("_", 1)
    return int(layer), location


def build_bottleneck(manager: AdapterManager, config: AdapterConfig, layers: Sequence[int]) -> nn.ModuleDict:
    """A ``BottleneckAdapter`` at each of the config's locations in each of ``layers``."""
    modules = nn.ModuleDict()
    for layer in layers:
        for location in config.locations():
            modules[point_key(layer, location)] = BottleneckAdapter(
                manager.hidden_size,
                config.bottleneck_for(manager.hidden_size),
                activation=config.activation,
                dropout=config.dropout,
                scaling=config.scaling,
                initialization=config.initialization,
            )
    return modules


def build_lora(
    manager: AdapterManager, config: LoraConfig, layers: Sequence[int]
) -> tuple[nn.ModuleDict, dict[str, str]]:
    """A ``LoraAdapter`` per adapted linear layer; also returns location -> module path for the hooks."""
    targets = config.target_modules or manager.spec.lora_targets
    if not targets:
        raise ValueError(
            f"LoraConfig.target_modules is unset and model type {manager.model_type!r} has no default LoRA "
            "targets; name the linear layers to adapt"
        )
    all_layers = layer_modules(manager.base_model, manager.spec)
    modules, paths = nn.ModuleDict(), {}
    for layer in layers:
        linears = linear_modules(all_layers[layer])
        for target in targets:
            exact = target in linears
            matches = [path for path in linears if path == target or (not exact and path.endswith("." + target))]
            if not matches:
                raise ValueError(
                    f"target_modules entry {target!r} matches no linear layer of layer {layer}; "
                    f"its linear layers: {list(linears)}"
                )
            for path in matches:
                in_features, out_features = linear_features(linears[path])  # type: ignore[misc]
                location = location_of(manager.spec, path)
                other = paths.get(location) or manager._point_paths.get(location) or path
                if other != path:
                    raise ValueError(f"linear layers {path!r} and {other!r} map to one point name {location!r}")
                paths[location] = path
                modules[point_key(layer, location)] = LoraAdapter(
                    in_features,
                    out_features,
                    config.r,
                    scaling=config.scaling,
                    dropout=config.dropout,
                    initialization=config.initialization,
                )
    return modules, paths
