"""The documented module path of ``MultiTaskTrainer`` (``training.multitask``)."""

from adapter_fusion.training.multitask import MultiTaskTrainer
from adapter_fusion.training.multitask_fusion import MultiTaskFusionTrainer

__all__ = ["MultiTaskFusionTrainer", "MultiTaskTrainer"]
