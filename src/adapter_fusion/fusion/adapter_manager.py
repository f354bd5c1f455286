"""The documented module path of ``AdapterManager`` (``models.manager``)."""

from adapter_fusion.models.manager import AdapterManager

__all__ = ["AdapterManager"]
