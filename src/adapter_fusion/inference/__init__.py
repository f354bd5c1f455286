"""Inference: ``FusionPipeline``."""

from adapter_fusion.inference.pipeline import FusionPipeline

__all__ = ["FusionPipeline"]
