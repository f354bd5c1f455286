"""The documented module path of multi-task loading: the task sampler and single-task batch stream
(``tasks.multitask_data``) and the split of a mixed dataset by its ``task`` column (``tasks.mixed``)."""

from adapter_fusion.tasks.mixed import split_by_task
from adapter_fusion.tasks.multitask_data import MultiTaskBatches, TaskSampler

__all__ = ["MultiTaskBatches", "TaskSampler", "split_by_task"]
