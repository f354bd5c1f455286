"""The documented module path of task evaluation: score a saved adapter or fusion, or the bare base model, on a
task split (``evaluation.evaluate``), or any model (``training.task_trainer.evaluate_model``)."""

from adapter_fusion.evaluation.evaluate import evaluate_adapter, evaluate_base
from adapter_fusion.training.task_trainer import evaluate_model

__all__ = ["evaluate_adapter", "evaluate_base", "evaluate_model"]
