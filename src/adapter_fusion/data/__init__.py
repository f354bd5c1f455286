"""The documented ``data`` package: multi-task data (``tasks.multitask_data``, ``tasks.mixed``) under the names the
documentation uses. ``from adapter_fusion.data import MultiTaskPreprocessor``."""

from adapter_fusion.data.multi_task_loader import MultiTaskBatches, TaskSampler, split_by_task
from adapter_fusion.data.task_datasets import MultiTaskPreprocessor, load_task_split

__all__ = ["MultiTaskBatches", "MultiTaskPreprocessor", "TaskSampler", "load_task_split", "split_by_task"]
