"""The documented detached form of ``AdapterManager``: adapters held without a model, loaded from their saved
directories and run on a hidden state, before ``FusionModel(..., adapter_manager=...)`` attaches them.

    manager = AdapterManager.from_adapter_paths(hidden_size=384, adapter_paths={"sentiment": "adapters/sst2"})
    outputs = manager(hidden_states)          # {"sentiment": [batch, seq, hidden]}, residual included

These functions are ``AdapterManager`` methods (bound in ``models.manager``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from adapter_fusion.adapters import BottleneckAdapter, adapter_config_from_dict
from adapter_fusion.io import load_tensors
from adapter_fusion.models.install import load_exact
from adapter_fusion.models.saving import ADAPTER_WEIGHTS, read_adapter_config

if TYPE_CHECKING:
    from adapter_fusion.models.manager import AdapterManager


def from_adapter_paths(
    cls: type[AdapterManager],
    hidden_size: int | None = None,
    adapter_paths: dict[str, Any] | None = None,
    freeze_adapters: bool = True,
    num_layers: int | None = None,
) -> AdapterManager:
    """A detached manager holding the saved adapters ``{name: directory}`` (frozen unless told otherwise)."""
    paths = dict(adapter_paths or {})
    manager = cls(list(paths), hidden_size=hidden_size, num_layers=num_layers)
    for name, path in paths.items():
        manager.load_adapter_from_path(name, path)
        manager.freeze(name, freeze_adapters)
    return manager


def load_adapter_from_path(self: AdapterManager, name: str, path: Any) -> str:
    """Load the saved adapter at ``path`` (``save_adapter``'s directory) as ``name``; its hidden size, layer
    count and model type must match the manager's."""
    info = read_adapter_config(path)
    saved = (info["hidden_size"], info["num_layers"], info["model_type"])
    mine = (self.hidden_size or saved[0], self.num_layers or saved[1], self.model_type or saved[2])
    if saved != mine:
        raise ValueError(
            f"adapter at {path} is for (hidden size, layers, model type) {saved}; this manager holds {mine}"
        )
    if self.base_model is None:
        self.hidden_size, self.num_layers, self.model_type = saved
        self.base_model_name = self.base_model_name or info.get("base_model")
    self.add_adapter(name, adapter_config_from_dict(info["adapter"], info.get("adapter_kind")), activate=False)
    try:
        load_exact(self.adapters[name], load_tensors(Path(path) / ADAPTER_WEIGHTS), f"adapter at {path}")
    except Exception:
        self.remove_adapter(name)
        raise
    return name


def run_adapters(
    self: AdapterManager,
    hidden_states: torch.Tensor,
    adapter_names: Iterable[str] | None = None,
    layer: int | None = None,
    location: str = "ffn",
) -> dict[str, torch.Tensor]:
    """Run each named adapter (default: all) at one point on ``hidden_states`` ``[batch, seq, hidden]``:
    ``{name: its output}`` (residual included). ``layer``: default each adapter's last layer. A bottleneck adapter
    reads ``hidden_states`` itself: with no sub-layer around it there is no residual stream to normalise
    (``original_ln_before``)."""
    names = list(adapter_names) if adapter_names is not None else self.list_adapters()
    self._check_names(names)
    outputs = {}
    for name in names:
        layers = [int(key.split("_")[0]) for key in self.adapters[name] if key.endswith(f"_{location}")]
        at = layer if layer is not None else max(layers, default=-1)
        if at not in layers:
            raise ValueError(f"adapter {name!r} has no {location!r} adapter in layer {at}; it has layers {layers}")
        module = self.adapter_module(name, at, location)
        if isinstance(module, BottleneckAdapter):
            outputs[name] = self.bottleneck_output(module, self.configs[name], hidden_states, hidden_states)  # type: ignore[arg-type]
        else:
            outputs[name] = self.apply_adapter(name, at, location, hidden_states, hidden_states)
    return outputs
