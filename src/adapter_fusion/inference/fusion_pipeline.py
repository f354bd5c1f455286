"""The documented module path of ``FusionPipeline`` (``inference.pipeline``)."""

from adapter_fusion.inference.pipeline import FusionPipeline

__all__ = ["FusionPipeline"]
