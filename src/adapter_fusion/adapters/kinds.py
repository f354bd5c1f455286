"""Adapter kinds: each kind is a config class (with its ``config_type``) and a module class.

A saved adapter records its kind as ``"adapter_kind"`` in ``adapter_config.json``; files written before LoRA
existed have no such key and hold a bottleneck adapter.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Union

from torch import nn

from adapter_fusion.adapters.bottleneck import BottleneckAdapter
from adapter_fusion.adapters.config import AdapterConfig
from adapter_fusion.adapters.lora import LoraAdapter
from adapter_fusion.adapters.lora_config import LoraConfig
from adapter_fusion.registry import Registry


@dataclasses.dataclass(frozen=True)
class AdapterKind:
    name: str
    config_class: type
    module_class: type[nn.Module]


ADAPTER_KINDS: Registry[AdapterKind] = Registry("adapter kind")
ADAPTER_KINDS.register("bottleneck", AdapterKind("bottleneck", AdapterConfig, BottleneckAdapter))
ADAPTER_KINDS.register("lora", AdapterKind("lora", LoraConfig, LoraAdapter))

# Every module class that holds an adapter's weights (the trainer finds adapter parameters by these types).
ADAPTER_MODULES: tuple[type[nn.Module], ...] = (BottleneckAdapter, LoraAdapter)
AnyAdapterConfig = Union[AdapterConfig, LoraConfig]  # noqa: UP007 (a runtime alias, used in isinstance checks)
DEFAULT_KIND = "bottleneck"


def adapter_kind(config: Any) -> str:
    """The kind name of an adapter config (``TypeError`` for anything else)."""
    for name, kind in ADAPTER_KINDS.items():
        if type(config) is kind.config_class:
            return name
    allowed = ", ".join(kind.config_class.__name__ for _, kind in ADAPTER_KINDS.items())
    raise TypeError(f"config must be one of {allowed}; got {type(config).__name__}")


def adapter_config_from_dict(data: dict[str, Any], kind: str | None = None) -> AnyAdapterConfig:
    """The config of ``kind`` (``None``: a bottleneck adapter, as files written before LoRA) from its dict."""
    return ADAPTER_KINDS.get(kind or DEFAULT_KIND).config_class.from_dict(data)  # type: ignore[no-any-return]
