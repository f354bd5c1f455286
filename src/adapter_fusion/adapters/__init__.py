"""Bottleneck adapters: config and module."""

from adapter_fusion.adapters.bottleneck import BottleneckAdapter, num_parameters
from adapter_fusion.adapters.config import AdapterConfig

__all__ = ["AdapterConfig", "BottleneckAdapter", "num_parameters"]
