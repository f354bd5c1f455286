"""Task routing: which task (and so which head and adapter) an unlabelled input belongs to.

A router is a sentence classification task whose classes are task (or adapter) names; its examples are the
tasks' own inputs flattened to text. So a router trains on the one training path like any task:

* inside a multi-task fusion, as one more task of the mix (a ``router`` head on the fused model's pooled states,
  trained jointly with the task heads; ``MultiTaskFusionTrainer``);
* among single adapters without a fusion, as a small adapter + head of its own (``train_adapter_router``), the
  answer to "which of my adapters fits this text".

``FusionPipeline.predict(text)`` without ``task=`` asks the router, then runs the chosen task's head.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import numpy as np

from adapter_fusion.tasks.base import TaskSpec

ROUTER = "router"
"""Name of the router's head (and adapter); no task may be called this."""
NOT_TEXT = frozenset({"label", "labels", "tags", "answers", "answer", "target", "summary", "id", "idx", "title",
                      "fname", "topic", "paper_id"})  # fmt: skip
"""Columns that never go into a router's input text (labels, answers, ids)."""


def router_spec(names: Sequence[str]) -> TaskSpec:
    """The routing task over ``names`` (tasks or adapters, in class-id order)."""
    names = list(names)
    if ROUTER in names:
        raise ValueError(f"{ROUTER!r} is the router's own name; rename that task or adapter (got {names})")
    if len(names) < 2:
        raise ValueError(f"a router chooses among at least 2 tasks or adapters; got {names}")
    return TaskSpec(
        name=ROUTER, task_type="classification", label_names=tuple(names), is_pair=False, metrics=("accuracy",),
        main_metric="accuracy", description=f"which of {names} an input belongs to",
    )  # fmt: skip


def input_text(value: Any, pair: str | None = None) -> str:
    """An input (or dataset row) as the router reads it: its texts joined (a word list joined by spaces; a dict's
    text fields in order, labels and answers left out)."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, Mapping):
        text = " ".join(input_text(v) for k, v in value.items() if k not in NOT_TEXT and _has_text(v))
    elif isinstance(value, (list, tuple)):
        text = " ".join(input_text(v) for v in value if _has_text(v))
    else:
        text = ""
    return f"{text} {pair}" if pair else text


def _has_text(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value)
    if isinstance(value, Mapping):
        return any(_has_text(v) for v in value.values())
    return isinstance(value, (list, tuple)) and any(isinstance(v, str) and v for v in value)


def router_dataset(
    task_datasets: Mapping[str, Any], names: Sequence[str] | None = None, per_task: int | None = None, seed: int = 0
) -> datasets.Dataset:
    """Routing examples: ``per_task`` rows of each task's dataset (default: the mean task size divided by the
    number of tasks, so the router weighs like one more task of average size; at least 1, at most the smallest
    task), flattened to ``text_a``, labelled with the task's index in ``names`` (default: the datasets' order)."""
    names = list(names or task_datasets)
    missing = [name for name in names if name not in task_datasets]
    if missing:
        raise ValueError(f"router_dataset: no examples for {missing}; got datasets of {sorted(task_datasets)}")
    sizes = [len(task_datasets[name]) for name in names]
    if per_task is None:
        per_task = max(1, min(min(sizes), math.ceil(sum(sizes) / len(sizes) / len(sizes))))
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for index, name in enumerate(names):
        dataset = task_datasets[name]
        chosen = sorted(rng.permutation(len(dataset))[: min(per_task, len(dataset))].tolist())
        for row in dataset.select(chosen):
            texts.append(input_text(row))
            labels.append(index)
    features = datasets.Features({"text_a": datasets.Value("string"), "text_b": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=names)})  # fmt: skip
    return datasets.Dataset.from_dict({"text_a": texts, "text_b": [""] * len(texts), "label": labels}, features)


__all__ = ["NOT_TEXT", "ROUTER", "input_text", "router_dataset", "router_spec"]
