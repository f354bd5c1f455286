"""Evaluation of saved adapters and fusions on task splits, their side-by-side comparison, and the analysis of
fusion weights (heatmaps and reports; matplotlib, from the ``analysis`` extra, is imported only when plotting)."""

from adapter_fusion.evaluation.analysis import FusionAnalysis, analyze_fusion
from adapter_fusion.evaluation.evaluate import evaluate_adapter, evaluate_base
from adapter_fusion.evaluation.fusion_evaluator import FusionEvaluator
from adapter_fusion.evaluation.fusion_weights import FusionWeightSummary, collect_fusion_weights
from adapter_fusion.evaluation.plots import plot_transfer_matrix

__all__ = [
    "FusionAnalysis",
    "FusionEvaluator",
    "FusionWeightSummary",
    "analyze_fusion",
    "collect_fusion_weights",
    "evaluate_adapter",
    "evaluate_base",
    "plot_transfer_matrix",
]
