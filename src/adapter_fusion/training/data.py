"""Tokenisation and collation for sentence(-pair) classification datasets (columns text_a, text_b, label)."""

from __future__ import annotations

from typing import Any

import numpy as np
from transformers import DataCollatorWithPadding

from adapter_fusion.tasks import TaskSpec

REQUIRED_COLUMNS = ("text_a", "label")


def check_columns(dataset: Any, what: str = "dataset") -> None:
    columns = getattr(dataset, "column_names", None)
    if columns is None:
        raise TypeError(f"{what} must be a datasets.Dataset; got {type(dataset).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ValueError(
            f"{what} lacks columns {missing}; it has {columns}. Expected text_a, optional text_b and label "
            "(adapter_fusion.tasks.load_task_split returns this schema)."
        )
    if len(dataset) == 0:
        raise ValueError(f"{what} is empty")


def tokenize(dataset: Any, tokenizer: Any, task: TaskSpec, max_length: int) -> Any:
    """Add input_ids / attention_mask (/ token_type_ids) and ``labels``; drop the text columns."""
    check_columns(dataset)
    pair = task.is_pair and "text_b" in dataset.column_names

    def encode(batch: dict[str, list[Any]]) -> dict[str, Any]:
        texts_b = batch["text_b"] if pair else None
        encoded = tokenizer(batch["text_a"], texts_b, truncation=True, max_length=max_length)
        encoded["labels"] = batch["label"]
        return encoded

    return dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc="tokenize")


def collator(tokenizer: Any) -> DataCollatorWithPadding:
    return DataCollatorWithPadding(tokenizer)


def predictions_from_logits(logits: Any, task: TaskSpec) -> np.ndarray:
    logits = np.asarray(logits[0] if isinstance(logits, tuple) else logits)
    if task.task_type == "regression":
        return logits.reshape(-1)
    return logits.argmax(axis=-1)
