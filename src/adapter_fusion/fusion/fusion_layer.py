"""The documented module path of the fusion layers: ``AttentionFusion``, ``WeightedFusion``, ``GatingFusion`` (one
module per method in ``fusion/``). Each is callable stand-alone on ``(hidden_states, adapter_outputs)``."""

from adapter_fusion.fusion.attention import AttentionFusion
from adapter_fusion.fusion.base import FusionLayer
from adapter_fusion.fusion.gating import GatingFusion
from adapter_fusion.fusion.weighted import WeightedFusion

__all__ = ["AttentionFusion", "FusionLayer", "GatingFusion", "WeightedFusion"]
