"""Sentence and sentence-pair classification and regression: the ``classification`` and ``regression`` task
types (schema ``text_a``, ``text_b`` (``""`` for single sentences), ``label``: a class id or a float score)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import datasets
import numpy as np
import torch
from transformers import DataCollatorWithPadding

from adapter_fusion.heads import HeadConfig
from adapter_fusion.tasks.base import HubSource, LabelMap, TaskSpec, get_task
from adapter_fusion.tasks.sentence.metrics import METRICS, compute_metrics
from adapter_fusion.tasks.sentence.readers import RawColumns
from adapter_fusion.tasks.types import MetricsFn, TaskType, register_task_type

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from adapter_fusion.models.model import AdapterModel


class SequenceClassificationType(TaskType):
    """One label per sentence (pair): a pooled classification head, cross-entropy, accuracy/F1/MCC."""

    name = "classification"
    head_type = "classification"
    columns = ("text_a", "label")
    problem_type = "single_label_classification"

    def validate_spec(self, spec: TaskSpec) -> None:
        lowered = [label.lower() for label in spec.label_names]
        if len(lowered) < 2 or len(set(lowered)) != len(lowered):
            raise ValueError(f"task {spec.name!r}: needs at least 2 distinct label_names; got {spec.label_names}")

    def metric_names(self) -> list[str]:
        return METRICS.names()

    def head_config(self, spec: TaskSpec, pooling: str = "mean") -> HeadConfig:
        return super().head_config(spec, pooling).replace(problem_type=self.problem_type)

    # ------------------------------------------------------------------ data
    def to_dataset(self, spec: TaskSpec, raw: RawColumns, label_map: LabelMap | None, origin: str) -> datasets.Dataset:
        if spec.is_pair:
            missing = [index for index, text in enumerate(raw.text_b) if not text.strip()]
            if missing:
                raise ValueError(
                    f"task {spec.name!r} is a sentence-pair task, but record {missing[0]} of {origin} has no second "
                    f"text ({len(missing)} of {len(raw.text_b)} records lack one)"
                )
        label_feature, labels = self._labels(spec, raw.labels, label_map, origin)
        features = datasets.Features(
            {"text_a": datasets.Value("string"), "text_b": datasets.Value("string"), "label": label_feature}
        )
        data = {"text_a": raw.text_a, "text_b": raw.text_b, "label": labels}
        return datasets.Dataset.from_dict(data, features=features)

    def _labels(
        self, spec: TaskSpec, raw_labels: list[object], label_map: LabelMap | None, origin: str
    ) -> tuple[Any, list[Any]]:
        return datasets.ClassLabel(names=list(spec.label_names)), class_ids(spec, raw_labels, label_map, origin)

    def from_hub(self, spec: TaskSpec, hub: HubSource, raw: datasets.Dataset, origin: str) -> datasets.Dataset:
        if hub.text_a is None:
            raise ValueError(f"task {spec.name!r}: its HubSource must name the text_a column")
        wanted = [column for column in (hub.text_a, hub.text_b, hub.label) if column is not None]
        missing = [column for column in wanted if column not in raw.column_names]
        if missing:
            raise ValueError(f"{origin} lacks columns {missing}; it has {raw.column_names}")
        labels = list(raw[hub.label])
        keep = [index for index, label in enumerate(labels) if label != hub.missing_label]
        if not keep:
            raise ValueError(f"task {spec.name!r}: {origin} has no gold labels")
        if len(keep) < len(labels):
            raw, labels = raw.select(keep), [labels[index] for index in keep]
        text_b = [str(text) for text in raw[hub.text_b]] if hub.text_b else [""] * len(raw)
        columns = RawColumns([str(text) for text in raw[hub.text_a]], text_b, labels)
        return self.to_dataset(spec, columns, hub.label_map, origin)

    def check_dataset(self, dataset: Any, what: str = "dataset") -> None:
        """Also refuse a dataset whose texts are all empty (it would train on padding alone)."""
        super().check_dataset(dataset, what)
        if not any(isinstance(text, str) and text.strip() for text in dataset["text_a"]):
            raise ValueError(f"{what}: all {len(dataset)} texts (text_a) are empty")

    def preprocess(
        self, spec: TaskSpec, dataset: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int
    ) -> datasets.Dataset:
        """Add input_ids / attention_mask (/ token_type_ids) and ``labels``; drop the text columns."""
        self.check_dataset(dataset)
        pair = spec.is_pair and "text_b" in dataset.column_names

        def encode(batch: dict[str, list[Any]]) -> dict[str, Any]:
            texts_b = batch["text_b"] if pair else None
            encoded = tokenizer(batch["text_a"], texts_b, truncation=True, max_length=max_length)
            encoded["labels"] = batch["label"]
            return encoded

        return dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc="tokenize")

    def collator(
        self, spec: TaskSpec, tokenizer: PreTrainedTokenizerBase
    ) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
        return DataCollatorWithPadding(tokenizer)

    def metrics_fn(
        self, spec: TaskSpec, dataset: datasets.Dataset, features: datasets.Dataset, tokenizer: PreTrainedTokenizerBase
    ) -> MetricsFn:
        def score(prediction: Any) -> dict[str, float]:
            return compute_metrics(spec, self.predictions(prediction.predictions), prediction.label_ids)

        return score

    @staticmethod
    def predictions(logits: Any) -> np.ndarray:
        logits = np.asarray(logits[0] if isinstance(logits, tuple) else logits)
        return logits.argmax(axis=-1)

    # ------------------------------------------------------------------ inference
    def takes_pairs(self, config: HeadConfig) -> bool | None:
        """True for a head trained on a sentence-pair task, False for a single-sentence task, None when the
        head's task is not registered (either is accepted then)."""
        try:
            return get_task(config.task).is_pair if config.task else None
        except KeyError:
            return None

    @torch.no_grad()
    def predict(
        self,
        model: AdapterModel,
        tokenizer: PreTrainedTokenizerBase,
        head: str,
        inputs: Sequence[Any],
        *,
        max_length: int = 128,
        batch_size: int = 32,
        text_pairs: Sequence[str] | None = None,
        **options: Any,
    ) -> list[dict[str, Any]]:
        """``inputs``: texts (``text_pairs``: their second sentences). Returns ``{"label", "score", "scores"}``
        per text (``score`` is the predicted value for regression)."""
        if options:
            raise TypeError(f"unexpected options for {self.name} prediction: {sorted(options)}")
        if any(not isinstance(text, str) or not text.strip() for text in inputs):
            raise ValueError(f"{self.name} inputs must be non-empty strings; got {list(inputs)!r}")
        if text_pairs is not None and len(text_pairs) != len(inputs):
            raise ValueError(f"got {len(inputs)} texts but {len(text_pairs)} text_pairs")
        config = model.head_config(head)
        pairs = self.takes_pairs(config)
        if pairs and text_pairs is None:
            raise ValueError(
                f"task {config.task!r} is a sentence-pair task: give each text its second sentence (text_pairs=; "
                "CLI: --pair SECOND, or 'first<TAB>second' lines in --input)"
            )
        if pairs is False and text_pairs is not None:
            raise ValueError(f"task {config.task!r} takes single sentences; text_pairs does not apply to it")
        if text_pairs is not None and any(not isinstance(text, str) or not text.strip() for text in text_pairs):
            raise ValueError(f"text_pairs must be non-empty strings; got {list(text_pairs)!r}")
        results: list[dict[str, Any]] = []
        for start in range(0, len(inputs), batch_size):
            chunk = list(inputs[start : start + batch_size])
            chunk_pairs = list(text_pairs[start : start + batch_size]) if text_pairs is not None else None
            encoded = tokenizer(
                chunk, chunk_pairs, truncation=True, max_length=max_length, padding=True, return_tensors="pt"
            )
            logits = model(**encoded, head=head).logits.float()
            results.extend(self._readable(config, logits))
        return results

    def _readable(self, config: HeadConfig, logits: torch.Tensor) -> list[dict[str, Any]]:
        probabilities = logits.softmax(dim=-1)
        names = config.label_names or tuple(str(i) for i in range(config.num_labels))
        results = []
        for row in probabilities.tolist():
            best = max(range(len(row)), key=row.__getitem__)
            results.append({"label": names[best], "score": row[best], "scores": dict(zip(names, row))})
        return results


class SequenceRegressionType(SequenceClassificationType):
    """One score per sentence (pair) (STS-B): a pooled 1-output head, mean squared error, Pearson/Spearman."""

    name = "regression"
    problem_type = "regression"

    def validate_spec(self, spec: TaskSpec) -> None:
        if spec.label_names:
            raise ValueError(f"task {spec.name!r}: a regression task has label_names=(); got {spec.label_names}")

    def num_labels(self, spec: TaskSpec) -> int:
        return 1

    def _labels(
        self, spec: TaskSpec, raw_labels: list[object], label_map: LabelMap | None, origin: str
    ) -> tuple[Any, list[Any]]:
        return datasets.Value("float32"), scores(spec, raw_labels, origin)

    @staticmethod
    def predictions(logits: Any) -> np.ndarray:
        logits = np.asarray(logits[0] if isinstance(logits, tuple) else logits)
        return logits.reshape(-1)

    def _readable(self, config: HeadConfig, logits: torch.Tensor) -> list[dict[str, Any]]:
        return [{"label": None, "score": float(value)} for value in logits.squeeze(-1).tolist()]


def _normalise_label(raw: object) -> str:
    return str(raw).strip().lower()


def class_ids(spec: TaskSpec, raw_labels: list[object], label_map: LabelMap | None, origin: str) -> list[int]:
    """Map raw labels (names, digit strings, ints) to class ids in ``spec.label_names`` order."""
    by_name = {name.lower(): index for index, name in enumerate(spec.label_names)}
    if label_map is None:
        table = {**by_name, **{str(index): index for index in range(len(spec.label_names))}}
    else:
        table = {_normalise_label(raw): by_name[name.lower()] for raw, name in label_map.items()}
    try:
        return [table[_normalise_label(raw)] for raw in raw_labels]
    except KeyError:
        bad = next(raw for raw in raw_labels if _normalise_label(raw) not in table)
        raise ValueError(
            f"task {spec.name!r}: label {bad!r} in {origin} is not an allowed label; allowed: {sorted(table)} "
            f"(label names: {list(spec.label_names)})"
        ) from None


def scores(spec: TaskSpec, raw_labels: list[object], origin: str) -> list[float]:
    """Parse regression targets, refusing anything that is not a finite number."""
    values = []
    for raw in raw_labels:
        try:
            value = float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value):
            raise ValueError(f"task {spec.name!r}: label {raw!r} in {origin} is not a finite number")
        values.append(value)
    return values


register_task_type(SequenceClassificationType())
register_task_type(SequenceRegressionType())
