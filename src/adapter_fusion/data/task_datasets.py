"""The documented module path of task datasets: ``MultiTaskPreprocessor`` (``tasks.multitask_data``) and
``load_task_split`` (``tasks.base``)."""

from adapter_fusion.tasks import load_task_split
from adapter_fusion.tasks.multitask_data import MultiTaskPreprocessor

__all__ = ["MultiTaskPreprocessor", "load_task_split"]
