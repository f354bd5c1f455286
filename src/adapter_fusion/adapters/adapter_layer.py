"""The documented module path of the bottleneck adapter layer: ``BottleneckAdapter`` (``adapters.bottleneck``)."""

from adapter_fusion.adapters.bottleneck import BottleneckAdapter
from adapter_fusion.adapters.config import AdapterConfig

__all__ = ["AdapterConfig", "BottleneckAdapter"]
