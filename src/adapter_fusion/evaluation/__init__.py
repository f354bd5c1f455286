"""Evaluation of saved adapters (and, later, fusions) on task splits."""

from adapter_fusion.evaluation.evaluate import evaluate_adapter

__all__ = ["evaluate_adapter"]
