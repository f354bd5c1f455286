"""Mixed multi-task data: one ``datasets.Dataset`` whose rows carry a ``task`` column, split into each task's
dataset in its task type's schema; task descriptions (``task_configs``) turned into ``TaskSpec``s.

    >>> split_by_task(mixed)            # rows {"text": ..., "labels": ..., "task": "sentiment"}
    {'sst2': Dataset(text_a, label), 'mnli': Dataset(text_a, text_b, label)}

Sentence tasks also accept the column names users bring (``text``/``sentence``/``premise`` for ``text_a``,
``text_pair``/``sentence2``/``hypothesis`` for ``text_b``, ``labels`` for ``label``) and label names as well as
class ids; a label out of a task's range is refused with the task, the value and the allowed ids named (a
cross-entropy on it would fail later with a bare ``IndexError``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import datasets

from adapter_fusion.tasks.base import TaskSpec, get_task
from adapter_fusion.tasks.types import get_task_type

TASK_COLUMN = "task"
COLUMN_ALIASES = {
    "text_a": ("text", "sentence", "sentence1", "premise", "question1"),
    "text_b": ("text_pair", "sentence2", "hypothesis", "question2"),
    "label": ("labels",),
}
"""Sentence (pair) tasks: schema column -> the other names it is accepted under."""
SENTENCE_TYPES = ("classification", "regression")


def normalise_dataset(spec: TaskSpec, dataset: Any, what: str = "dataset") -> Any:
    """``dataset`` in ``spec``'s schema: sentence tasks get their aliased columns renamed, label names turned into
    class ids and every class id checked against the task's labels. Other task types pass through unchanged."""
    if spec.task_type not in SENTENCE_TYPES or not hasattr(dataset, "column_names"):
        return dataset
    for column, aliases in COLUMN_ALIASES.items():
        if column in dataset.column_names:
            continue
        found = [alias for alias in aliases if alias in dataset.column_names]
        if found:
            dataset = dataset.rename_column(found[0], column)
    if spec.task_type == "classification" and "label" in dataset.column_names and len(dataset):
        dataset = _class_ids(spec, dataset, what)
    return dataset


def _class_ids(spec: TaskSpec, dataset: datasets.Dataset, what: str) -> datasets.Dataset:
    labels = dataset["label"]
    by_name = {name.lower(): index for index, name in enumerate(spec.label_names)}
    allowed = f"class ids 0..{len(spec.label_names) - 1} or label names {list(spec.label_names)}"
    ids = []
    for value in labels:
        if isinstance(value, str) and value.strip().lower() in by_name:
            ids.append(by_name[value.strip().lower()])
        elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(spec.label_names):
            ids.append(value)
        else:
            raise ValueError(f"task {spec.name!r}: label {value!r} in {what} is out of range; allowed: {allowed}")
    if ids == labels:
        return dataset
    return dataset.remove_columns("label").add_column("label", ids)


def task_spec(name: str, config: Mapping[str, Any] | None = None, num_labels: int | None = None) -> TaskSpec:
    """The spec of task ``name``: a registered task (or the one ``config["dataset"]`` names, renamed ``name``), or
    for an unregistered name a sentence classification task of ``config["num_labels"]`` (else ``num_labels``)
    classes. A ``num_labels`` that contradicts a registered task's labels is refused."""
    config = dict(config or {})
    unknown = sorted(set(config) - {"dataset", "num_labels", "label_names", "is_pair"})
    if unknown:
        raise ValueError(f"task {name!r}: unknown task_configs keys {unknown}; allowed: dataset, num_labels, "
                         "label_names, is_pair")  # fmt: skip
    wanted = config.get("num_labels", num_labels)
    try:
        spec = get_task(str(config.get("dataset") or name))
    except KeyError:
        if config.get("dataset"):
            raise
        labels = tuple(config.get("label_names") or ())
        count = len(labels) or wanted
        if not isinstance(count, int) or isinstance(count, bool) or count < 2:
            raise ValueError(
                f"task {name!r} is not a registered task (see list-tasks); give its num_labels (an integer >= 2) "
                f"or label_names in task_configs or ModelConfig.num_labels; got {count!r}"
            ) from None
        return TaskSpec(
            name=name.lower(), task_type="classification", label_names=labels or tuple(map(str, range(count))),
            is_pair=bool(config.get("is_pair", False)), metrics=("accuracy",), main_metric="accuracy",
            description=f"user task {name!r}: sentence classification into {count} classes (data given by the user)",
        )  # fmt: skip
    if config.get("dataset") and spec.name != name.lower():  # the head is called what the user calls the task
        spec = dataclasses.replace(spec, name=name.lower(), aliases=())
    if "num_labels" in config and config["num_labels"] != spec.num_labels:
        raise ValueError(
            f"task {name!r} ({spec.name}) has {spec.num_labels} labels {list(spec.label_names)}; "
            f"task_configs gives num_labels={config['num_labels']!r}"
        )
    return spec


def task_specs(
    task_configs: Mapping[str, Mapping[str, Any]] | None = None,
    task_names: Any = (),
    num_labels: int | None = None,
) -> dict[str, TaskSpec]:
    """Specs of the tasks named by ``task_configs`` (name -> {"dataset", "num_labels"}) and ``task_names``."""
    names = list(dict.fromkeys([*(task_configs or {}), *task_names]))
    specs: dict[str, TaskSpec] = {}
    for name in names:
        spec = task_spec(name, (task_configs or {}).get(name), num_labels)
        if spec.name in specs:
            raise ValueError(f"tasks {names} name task {spec.name!r} twice")
        specs[spec.name] = spec
    return specs


def resolve_row_task(value: Any, specs: Mapping[str, TaskSpec] | None) -> str:
    """The task a row's ``task`` value names: one of ``specs`` (by name or alias), or any registered task when
    ``specs`` is None."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"the {TASK_COLUMN!r} column must hold task names; got {value!r}")
    if specs is not None:
        if value.lower() in specs:
            return value.lower()
        try:
            canonical = get_task(value).name
        except KeyError:
            canonical = None
        if canonical in specs:
            return str(canonical)
        raise ValueError(
            f"the dataset has rows of task {value!r}, but this fusion has heads for tasks {sorted(specs)} only"
        )
    try:
        return get_task(value).name
    except KeyError:
        raise ValueError(
            f"the dataset has rows of task {value!r}, which is not a registered task (see list-tasks); describe it "
            "with ModelConfig(task_names=..., num_labels=...) or MultiTaskPreprocessor(task_configs=...)"
        ) from None


def split_by_task(
    dataset: Any, specs: Mapping[str, TaskSpec] | None = None, what: str = "dataset"
) -> dict[str, datasets.Dataset]:
    """Task -> its rows of ``dataset`` (without the ``task`` column and the columns no row of the task fills),
    in the task type's schema. ``specs``: the allowed tasks (None: every registered task)."""
    names = getattr(dataset, "column_names", None)
    if names is None or TASK_COLUMN not in names:
        raise ValueError(f"a multi-task {what} needs a {TASK_COLUMN!r} column naming each row's task; it has {names}")
    rows: dict[str, list[int]] = {}
    for index, value in enumerate(dataset[TASK_COLUMN]):
        rows.setdefault(resolve_row_task(value, specs), []).append(index)
    result = {}
    for task, indices in rows.items():
        part = dataset.select(indices).remove_columns(TASK_COLUMN)
        empty = [column for column in part.column_names if all(value is None for value in part[column])]
        part = part.remove_columns(empty) if empty else part
        spec = specs[task] if specs is not None else get_task(task)
        part = normalise_dataset(spec, part, f"{what} (task {task!r})")
        get_task_type(spec).check_dataset(part, f"the {task!r} rows of {what}")
        result[task] = part
    return result


def has_task_column(dataset: Any) -> bool:
    return TASK_COLUMN in (getattr(dataset, "column_names", None) or ())


__all__ = [
    "COLUMN_ALIASES",
    "TASK_COLUMN",
    "has_task_column",
    "normalise_dataset",
    "resolve_row_task",
    "split_by_task",
    "task_spec",
    "task_specs",
]
