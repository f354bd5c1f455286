"""Few-shot splits as in LM-BFF (Gao et al. 2021): k labelled examples per class for training and another k per
class for model selection, drawn from a task's train split with a data seed.

>>> train, dev = few_shot_splits("cr", shots=16, seed=13)     # 32 + 32 customer reviews
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from adapter_fusion.config import check_positive
from adapter_fusion.tasks.base import TaskSpec, get_task, load_task_split


def few_shot_splits(task: str | TaskSpec, shots: int = 16, seed: int = 13,
                    data_dir: str | Path | None = None) -> tuple[Any, Any]:
    """``shots`` training and ``shots`` model-selection examples of every class of ``task``'s train split, disjoint,
    drawn in the order of a permutation seeded by ``seed``; each returned split keeps the train split's row order.
    Classification tasks only (a class is a label id)."""
    spec = task if isinstance(task, TaskSpec) else get_task(task)
    check_positive("shots", shots, integer=True)
    if spec.task_type != "classification":
        raise ValueError(f"few-shot splits need a classification task; {spec.name!r} is {spec.task_type!r}")
    train = load_task_split(spec, "train", data_dir)
    labels = train["label"]
    picked: dict[str, dict[int, list[int]]] = {"train": {}, "dev": {}}
    for index in np.random.default_rng(seed).permutation(len(train)).tolist():
        for part in ("train", "dev"):
            bucket = picked[part].setdefault(labels[index], [])
            if len(bucket) < shots:
                bucket.append(index)
                break
    for part, buckets in picked.items():
        counts = {spec.label_names[label]: len(rows) for label, rows in buckets.items()}
        if len(buckets) != spec.num_labels or min(counts.values()) < shots:
            raise ValueError(f"task {spec.name!r}: its train split has too few examples for {shots} {part} examples "
                             f"of each of its {spec.num_labels} classes; found {counts}")
    return tuple(train.select(sorted(i for rows in picked[p].values() for i in rows)) for p in ("train", "dev"))
