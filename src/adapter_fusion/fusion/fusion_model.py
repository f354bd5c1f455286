"""The documented module path of ``FusionModel`` (``models.fusion_model``)."""

from adapter_fusion.models.fusion_model import FusionModel, FusionModelOutput

__all__ = ["FusionModel", "FusionModelOutput"]
