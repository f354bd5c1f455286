"""Task types: what a family of tasks owns — its split schema, preprocessing, collation, head, metrics and
prediction — registered by name in ``TASK_TYPES``.

A ``TaskSpec`` names its type (``"classification"``, ``"token_classification"``, ...); the trainer, the evaluator,
the pipeline and the CLI only ever talk to the type, so adding a task family is one module that registers a
``TaskType`` subclass (and its heads), and no edit to the training loop.

The life of an example::

    reader(paths) -> raw records --to_dataset--> Dataset (the type's schema, e.g. tokens/tags)
        --preprocess--> features (input_ids, attention_mask, labels, ...) --collator--> batches for the model
        --model--> logits --metrics_fn / evaluate--> {metric: value};  predict(): raw inputs -> readable outputs
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import datasets
import numpy as np
import torch
from transformers import EvalPrediction

from adapter_fusion.heads import HeadConfig
from adapter_fusion.registry import Registry

if TYPE_CHECKING:  # annotations only: base.py builds TaskSpec on top of this module
    from torch import nn
    from transformers import PreTrainedTokenizerBase

    from adapter_fusion.models.model import AdapterModel
    from adapter_fusion.tasks.base import HubSource, LabelMap, TaskSpec

BatchT = TypeVar("BatchT")
ResultT = TypeVar("ResultT")
MetricsFn = Callable[[Any], dict[str, float]]
"""``(transformers.EvalPrediction) -> {metric: value}``: scores the eval features of one dataset."""


class TaskType:
    """Base class of a task family. Subclasses set ``name``, ``head_type`` and ``columns`` and implement the
    hooks marked below; ``evaluate`` has a generic batched implementation on top of ``preprocess``,
    ``collator`` and ``metrics_fn``."""

    name: ClassVar[str]
    """Registered name, the value of ``TaskSpec.task_type``."""
    head_type: ClassVar[str]
    """The head type (``adapter_fusion.heads.HEADS``) this family trains."""
    columns: ClassVar[tuple[str, ...]]
    """Columns every split of this type has (the schema ``to_dataset`` builds)."""
    causal_lm: ClassVar[bool] = False
    """True when the type needs a causal decoder LM (``AutoModelForCausalLM``) as its base model."""
    default_model: ClassVar[str | None] = None
    """Base model used when the user names none (None: the library default, the bundled MiniLM)."""
    max_loss_eval_batch_size: ClassVar[int | None] = None
    """Largest batch for the dev-loss evaluation during training (None: ``TrainingConfig.eval_batch_size``).
    Causal LMs cap it: their logits are ``[batch, seq, vocab]`` (49,152 words for SmolLM2), 128 x 350 tokens of
    which are 8.8 GB of float32."""

    def loss_eval_batch_size(self, requested: int) -> int:
        """Batch size of a dev-loss evaluation asked to run in batches of ``requested``."""
        return min(requested, self.max_loss_eval_batch_size or requested)

    # ------------------------------------------------------------------ spec
    def validate_spec(self, spec: TaskSpec) -> None:
        """Raise ``ValueError`` naming the field if ``spec`` is inconsistent with this type."""

    def metric_names(self) -> list[str]:
        """Metrics a task of this type may list in ``TaskSpec.metrics``."""
        raise NotImplementedError(f"task type {self.name!r} must name its metrics (metric_names)")

    def num_labels(self, spec: TaskSpec) -> int:
        return len(spec.label_names)

    def head_config(self, spec: TaskSpec, pooling: str = "mean") -> HeadConfig:
        return HeadConfig(
            head_type=self.head_type,
            num_labels=max(1, self.num_labels(spec)),
            label_names=tuple(spec.label_names),
            pooling=pooling,
            task=spec.name,
        )

    # ------------------------------------------------------------------ data
    def to_dataset(self, spec: TaskSpec, raw: Any, label_map: LabelMap | None, origin: str) -> datasets.Dataset:
        """The reader's output (``raw``) as a ``datasets.Dataset`` with ``self.columns``; bad records raise
        ``ValueError`` naming ``origin`` and what is wrong."""
        raise NotImplementedError(f"task type {self.name!r} cannot read local files")

    def from_hub(self, spec: TaskSpec, hub: HubSource, raw: datasets.Dataset, origin: str) -> datasets.Dataset:
        """A Hub split (``raw``) in this type's schema."""
        raise NotImplementedError(f"task type {self.name!r} has no Hub loader")

    def takes_pairs(self, config: HeadConfig) -> bool | None:
        """Whether a head of this config predicts on sentence pairs (``text_pairs``); None when unknown."""
        return False

    def check_dataset(self, dataset: Any, what: str = "dataset") -> None:
        """Refuse anything that is not a non-empty ``datasets.Dataset`` with this type's columns."""
        names = getattr(dataset, "column_names", None)
        if names is None:
            raise TypeError(f"{what} must be a datasets.Dataset; got {type(dataset).__name__}")
        missing = [column for column in self.columns if column not in names]
        if missing:
            raise ValueError(
                f"{what} lacks columns {missing}; it has {names}. A {self.name} dataset has columns "
                f"{list(self.columns)} (adapter_fusion.tasks.load_task_split returns this schema)."
            )
        if len(dataset) == 0:
            raise ValueError(f"{what} is empty")

    def preprocess(
        self, spec: TaskSpec, dataset: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int
    ) -> datasets.Dataset:
        """Tokenised features: model inputs plus ``labels`` (and any metadata ``metrics_fn`` needs, which the
        collator drops)."""
        raise NotImplementedError

    def collator(
        self, spec: TaskSpec, tokenizer: PreTrainedTokenizerBase
    ) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
        """Batches of features -> padded tensors the model takes (``labels`` included)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ scoring
    def metrics_fn(
        self, spec: TaskSpec, dataset: datasets.Dataset, features: datasets.Dataset, tokenizer: PreTrainedTokenizerBase
    ) -> MetricsFn | None:
        """Scores the model's logits on ``features`` (made from ``dataset``) with ``spec.metrics``; None when
        metrics need more than logits (generation: see ``evaluate``)."""
        raise NotImplementedError

    def evaluate(
        self,
        model: AdapterModel,
        tokenizer: PreTrainedTokenizerBase,
        spec: TaskSpec,
        dataset: datasets.Dataset,
        *,
        max_length: int = 128,
        batch_size: int = 64,
        head: str | None = None,
        adapter_names: Any = None,
    ) -> dict[str, float]:
        """``spec``'s metrics of ``model`` on ``dataset`` (batched forward passes in ``evaluation_loop``, no
        Trainer)."""
        self.check_dataset(dataset)
        features = self.preprocess(spec, dataset, tokenizer, max_length)
        score = self.metrics_fn(spec, dataset, features, tokenizer)
        if score is None:
            raise NotImplementedError(f"task type {self.name!r} must override evaluate()")
        device = next(model.parameters()).device

        def logits(batch: tuple[int, dict[str, Any], torch.Tensor | None]) -> tuple[np.ndarray, np.ndarray | None]:
            _, inputs, labels = batch
            output = model(**inputs, head=head, adapter_names=adapter_names)
            return output.logits.float().cpu().numpy(), None if labels is None else labels.cpu().numpy()

        batches = feature_batches(features, self.collator(spec, tokenizer), batch_size, device)
        results = evaluation_loop(model, batches, logits)
        predictions = pad_concat([scores for scores, _ in results], 0.0)
        labels = pad_concat([gold for _, gold in results if gold is not None], -100)
        return score(EvalPrediction(predictions=predictions, label_ids=labels))

    # ------------------------------------------------------------------ inference
    def is_single_input(self, inputs: Any) -> bool:
        """Whether ``inputs`` is one input (not a list of inputs); default: a string is one input."""
        return isinstance(inputs, str)

    def predict(
        self,
        model: AdapterModel,
        tokenizer: PreTrainedTokenizerBase,
        head: str,
        inputs: Sequence[Any],
        *,
        max_length: int = 128,
        batch_size: int = 32,
        **options: Any,
    ) -> list[dict[str, Any]]:
        """Readable predictions for raw ``inputs`` (one dict per input); see each type for the input form."""
        raise NotImplementedError(f"task type {self.name!r} has no predict()")


def feature_batches(
    features: Any, collate: Callable[[list[dict[str, Any]]], dict[str, Any]], batch_size: int, device: Any
) -> Iterator[tuple[int, dict[str, Any], torch.Tensor | None]]:
    """``(first row, model inputs on device, labels or None)`` per batch of ``features``: the batching shared by
    ``TaskType.evaluate``, the multi-task dev loss and the fusion-weight analysis (``evaluation.fusion_weights``)."""
    for start in range(0, len(features), batch_size):
        batch = collate([features[i] for i in range(start, min(start + batch_size, len(features)))])
        labels = batch.pop("labels", None)
        yield start, {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}, labels


def evaluation_loop(model: nn.Module, batches: Iterable[BatchT], step: Callable[[BatchT], ResultT]) -> list[ResultT]:
    """``[step(batch) for batch in batches]`` with ``model`` in eval mode and without gradients, its training mode
    put back afterwards: the one evaluation loop of every task type (``TaskType.evaluate`` on logits,
    ``GenerationType.generate``) and of the multi-task trainer's dev loss."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return [step(batch) for batch in batches]
    finally:
        model.train(was_training)


def pad_concat(arrays: Sequence[np.ndarray], pad_value: float) -> np.ndarray:
    """Concatenate batches along axis 0, right-padding axis 1 (sequence length) to the longest batch, as the
    Trainer's evaluation loop does. ``[]`` gives an empty array."""
    if not arrays:
        return np.zeros((0,))
    if arrays[0].ndim < 2 or all(a.shape[1:] == arrays[0].shape[1:] for a in arrays):
        return np.concatenate(arrays)
    width = max(a.shape[1] for a in arrays)
    padded = []
    for array in arrays:
        pad = [(0, 0)] * array.ndim
        pad[1] = (0, width - array.shape[1])
        padded.append(np.pad(array, pad, constant_values=pad_value))
    return np.concatenate(padded)


TASK_TYPES: Registry[TaskType] = Registry("task type")


def register_task_type(task_type: TaskType, aliases: tuple[str, ...] = ()) -> TaskType:
    TASK_TYPES.register(task_type.name, task_type, aliases=aliases)
    return task_type


def get_task_type(spec_or_name: TaskSpec | str) -> TaskType:
    """The registered ``TaskType`` of a spec (or by its name)."""
    name = spec_or_name if isinstance(spec_or_name, str) else spec_or_name.task_type
    return TASK_TYPES.get(name)


def as_mapping(value: Any, what: str) -> Mapping[str, Any]:
    """``value`` if it is a mapping, else a ``TypeError`` naming what was expected."""
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} must be a dict; got {type(value).__name__}: {value!r}")
    return value
