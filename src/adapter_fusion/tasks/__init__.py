"""Tasks: a registry of task specs and task types, split loading (local files or the Hub), metrics.

Each task family is a package (``sentence``, ``tagging``, ``qa``, ``choice``, ``generation``) with its task type,
readers, metrics and catalogue; importing it registers its types and datasets. The shared layer is ``base`` (specs,
registry, loading) and ``types`` (``TaskType``).

>>> spec = get_task("sentiment")          # -> the "sst2" TaskSpec
>>> train = load_task_split(spec, "train", max_examples=1000)   # columns text_a, text_b, label
>>> compute_metrics(spec, predictions=[1, 0], references=[1, 1])
{'accuracy': 0.5}
"""

from adapter_fusion.tasks import sentence as _sentence  # noqa: F401, I001  (each family registers its types and tasks)
from adapter_fusion.tasks import qa as _qa  # noqa: F401
from adapter_fusion.tasks import choice as _choice  # noqa: F401
from adapter_fusion.tasks import tagging as _tagging  # noqa: F401
from adapter_fusion.tasks import generation as _generation  # noqa: F401
from adapter_fusion.tasks.base import (
    CARVE_SEED,
    DATA_DIR_ENV,
    SPLITS,
    TASKS,
    TaskSpec,
    get_task,
    list_tasks,
    load_task_split,
    register_task,
    resolve_data_dir,
    task_type_for_head,
)
from adapter_fusion.tasks.fewshot import few_shot_splits
from adapter_fusion.tasks.sentence.metrics import METRICS, compute_metrics
from adapter_fusion.tasks.types import TASK_TYPES, TaskType, get_task_type, register_task_type

__all__ = [
    "CARVE_SEED",
    "DATA_DIR_ENV",
    "METRICS",
    "SPLITS",
    "TASKS",
    "TASK_TYPES",
    "TaskSpec",
    "TaskType",
    "compute_metrics",
    "few_shot_splits",
    "get_task",
    "get_task_type",
    "list_tasks",
    "load_task_split",
    "register_task",
    "register_task_type",
    "resolve_data_dir",
    "task_type_for_head",
]
