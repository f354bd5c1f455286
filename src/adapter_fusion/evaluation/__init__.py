"""Evaluation of saved adapters and fusions on task splits, and their side-by-side comparison."""

from adapter_fusion.evaluation.compare import FusionEvaluator
from adapter_fusion.evaluation.evaluate import evaluate_adapter, evaluate_base

__all__ = ["FusionEvaluator", "evaluate_adapter", "evaluate_base"]
