"""Adapter kinds: bottleneck adapters and LoRA, their configs and modules."""

from adapter_fusion.adapters.bottleneck import BottleneckAdapter, num_parameters
from adapter_fusion.adapters.config import AdapterConfig
from adapter_fusion.adapters.kinds import (
    ADAPTER_KINDS,
    ADAPTER_MODULES,
    AnyAdapterConfig,
    adapter_config_from_dict,
    adapter_kind,
)
from adapter_fusion.adapters.lora import LoraAdapter
from adapter_fusion.adapters.lora_config import LoraConfig

__all__ = [
    "ADAPTER_KINDS",
    "ADAPTER_MODULES",
    "AdapterConfig",
    "AnyAdapterConfig",
    "BottleneckAdapter",
    "LoraAdapter",
    "LoraConfig",
    "adapter_config_from_dict",
    "adapter_kind",
    "num_parameters",
]
