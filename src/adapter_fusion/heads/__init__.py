"""Task heads."""

from adapter_fusion.heads import causal_lm as _causal_lm  # noqa: F401  (registers the head)
from adapter_fusion.heads import choice as _choice  # noqa: F401  (registers the multiple_choice head)
from adapter_fusion.heads import classification as _classification  # noqa: F401  (registers the head)
from adapter_fusion.heads import span as _span  # noqa: F401  (registers the span head for extractive QA)
from adapter_fusion.heads import tagging as _tagging  # noqa: F401  (registers the head)
from adapter_fusion.heads.base import HEADS, HeadConfig, build_head, head_inputs, pool
from adapter_fusion.heads.causal_lm import CausalLMHead
from adapter_fusion.heads.classification import ClassificationHead

__all__ = ["HEADS", "CausalLMHead", "ClassificationHead", "HeadConfig", "build_head", "head_inputs", "pool"]
