"""Multiple choice: the ``multiple_choice`` task type (its tasks, CODAH, DREAM and PIQA, are in ``catalogue.py``).

Schema of a split: ``context`` (str), ``question`` (str, ``""`` where there is none), ``options`` (list of str, at
least 2) and ``label`` (int, the index of the correct option).

How an example is encoded: each option becomes its own sequence pair, scored by the ``multiple_choice`` head
(``adapter_fusion.heads.choice``); the model gets ``input_ids [batch, choices, seq]`` and returns ``[batch, choices]``
scores; the loss is cross-entropy over the options. The pair of each option is

- context and question (DREAM): first = context (the dialogue), second = ``question + " " + option``;
- context only (CODAH, PIQA): first = context (the prefix / goal), second = option;
- question only: first = question, second = option.

Truncation to ``max_length`` cuts the first segment from its end (``truncation="only_first"``), so the question and
the option always survive whole; for DREAM this keeps the start of the dialogue. Only when the second segment alone
does not fit (fewer than one context token would be left) is that pair truncated with ``"longest_first"``, which
then shortens the option too.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import datasets
import numpy as np
import torch

from adapter_fusion.tasks.base import HubSource, LabelMap, TaskSpec
from adapter_fusion.tasks.choice.metrics import choice_accuracy
from adapter_fusion.tasks.types import MetricsFn, TaskType, register_task_type

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from adapter_fusion.models.model import AdapterModel

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
FEATURES = datasets.Features(
    {
        "context": datasets.Value("string"),
        "question": datasets.Value("string"),
        "options": datasets.Sequence(datasets.Value("string")),
        "label": datasets.Value("int64"),
    }
)
HUB_FIELDS = ("context", "question", "options", "label", "answer")
"""Keys of ``HubSource.columns`` for a multiple-choice task: our field -> Hub column. ``options`` is one list column
or several columns joined by commas (``"sol1,sol2"``); the label is ``label`` (an option index column; default
``HubSource.label``) or ``answer`` (a column holding the correct option's text)."""


# ------------------------------------------------------------------------------------------------------ records
def check_example(example: Any, where: str, *, labelled: bool = True) -> dict[str, Any]:
    """One example as ``{"context", "question", "options", "label"}`` (without ``label`` when not ``labelled``);
    anything malformed raises ``ValueError``/``TypeError`` naming ``where``, the value and what is allowed."""
    if not isinstance(example, Mapping):
        raise TypeError(
            f"{where}: a multiple-choice example is a dict with context, question and options; "
            f"got {type(example).__name__}: {example!r}"
        )
    context, question = example.get("context", ""), example.get("question", "")
    for field, value in (("context", context), ("question", question)):
        if not isinstance(value, str):
            raise TypeError(f"{where}: {field} must be a str; got {type(value).__name__}: {value!r}")
    if not context.strip() and not question.strip():
        raise ValueError(f"{where}: context and question are both empty; an example needs at least one of them")
    options = example.get("options")
    if isinstance(options, str) or not isinstance(options, Sequence):
        raise TypeError(f"{where}: options must be a list of str; got {type(options).__name__}: {options!r}")
    if len(options) < 2:
        raise ValueError(f"{where}: options must hold at least 2 options; got {list(options)!r}")
    for index, option in enumerate(options):
        if not isinstance(option, str) or not option.strip():
            raise ValueError(f"{where}: option {index} must be a non-empty str; got {option!r} (options {options!r})")
    record = {"context": context, "question": question, "options": list(options)}
    if not labelled:
        return record
    label = example.get("label")
    try:
        if isinstance(label, bool):
            raise TypeError
        label = operator.index(label)
    except TypeError:
        raise ValueError(
            f"{where}: label must be an int option index in 0..{len(options) - 1}; got {label!r}"
        ) from None
    if not 0 <= label < len(options):
        raise ValueError(
            f"{where}: label {label} is outside the allowed range 0..{len(options) - 1} ({len(options)} options)"
        )
    return {**record, "label": label}


def segments(context: str, question: str, option: str) -> tuple[str, str]:
    """The (first, second) text pair that scores ``option`` (see the module docstring)."""
    if not context.strip():
        return question, option
    if not question.strip():
        return context, option
    return context, f"{question} {option}"


def encode_choices(
    tokenizer: PreTrainedTokenizerBase, examples: Sequence[Mapping[str, Any]], max_length: int
) -> dict[str, list[list[list[int]]]]:
    """Tokenise every option of every example: ``{input name: [example][option][token]}`` (unpadded)."""
    firsts, seconds, owners = [], [], []
    for number, example in enumerate(examples):
        for option in example["options"]:
            first, second = segments(example["context"], example["question"], option)
            firsts.append(first)
            seconds.append(second)
            owners.append(number)
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    second_lengths = [len(ids) for ids in tokenizer(seconds, add_special_tokens=False)["input_ids"]]
    # "only_first" fails when the second segment alone leaves no room for the first: those pairs use "longest_first"
    fits = [length + specials < max_length for length in second_lengths]
    encoded: list[dict[str, list[int]] | None] = [None] * len(firsts)
    for strategy, wanted in (("only_first", True), ("longest_first", False)):
        rows = [i for i, fit in enumerate(fits) if fit is wanted]
        if not rows:
            continue
        out = tokenizer(
            [firsts[i] for i in rows], [seconds[i] for i in rows], truncation=strategy, max_length=max_length
        )
        names = [name for name in MODEL_INPUTS if name in out]
        for position, row in enumerate(rows):
            encoded[row] = {name: out[name][position] for name in names}
    result: dict[str, list[list[list[int]]]] = {}
    for row, owner in enumerate(owners):
        pair = encoded[row]
        assert pair is not None
        for name, ids in pair.items():
            per_example = result.setdefault(name, [[] for _ in examples])
            per_example[owner].append(list(ids))
    return result


@dataclass(frozen=True)
class ChoiceCollator:
    """Features ``{input_ids: [choices][tokens], ..., labels}`` -> ``input_ids [batch, choices, seq]`` (plus
    ``attention_mask`` and, where the tokenizer makes them, ``token_type_ids``), padded to the batch's longest option,
    and ``labels [batch]``. Every other feature (``length``) is dropped."""

    pad_token_id: int = 0
    padding_side: str = "right"

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("cannot collate an empty batch")
        counts = sorted({len(feature["input_ids"]) for feature in features})
        if len(counts) != 1:
            raise ValueError(
                f"a multiple-choice batch must hold examples with the same number of options; this batch mixes "
                f"{counts} options (give every example of a task the same number of options)"
            )
        width = max(len(ids) for feature in features for ids in feature["input_ids"])
        pad_values = {"input_ids": self.pad_token_id, "attention_mask": 0, "token_type_ids": 0}
        batch: dict[str, torch.Tensor] = {}
        for name in MODEL_INPUTS:
            if name == "attention_mask" and name not in features[0]:
                rows = [[[1] * len(ids) for ids in feature["input_ids"]] for feature in features]
            elif name in features[0]:
                rows = [feature[name] for feature in features]
            else:
                continue
            batch[name] = torch.tensor(
                [[self._pad(list(ids), width, pad_values[name]) for ids in options] for options in rows],
                dtype=torch.long,
            )
        if "labels" in features[0]:
            batch["labels"] = torch.tensor([int(feature["labels"]) for feature in features], dtype=torch.long)
        return batch

    def _pad(self, ids: list[int], width: int, value: int) -> list[int]:
        padding = [value] * (width - len(ids))
        return padding + ids if self.padding_side == "left" else ids + padding


# ------------------------------------------------------------------------------------------------------ task type
class MultipleChoiceType(TaskType):
    """Pick one of several options per example: a 1-output scorer per (context, option), cross-entropy over the
    options, accuracy."""

    name = "multiple_choice"
    head_type = "multiple_choice"
    columns = ("context", "question", "options", "label")

    def validate_spec(self, spec: TaskSpec) -> None:
        if spec.label_names:
            raise ValueError(
                f"task {spec.name!r}: a multiple_choice task has label_names=() (labels are option indices); "
                f"got {spec.label_names}"
            )
        if spec.is_pair:
            raise ValueError(f"task {spec.name!r}: a multiple_choice task has is_pair=False")
        if tuple(spec.metrics) != ("accuracy",):
            raise ValueError(
                f"task {spec.name!r}: a multiple_choice task has metrics=('accuracy',); got {spec.metrics}"
            )

    def metric_names(self) -> list[str]:
        return ["accuracy"]

    def num_labels(self, spec: TaskSpec) -> int:
        return 1  # one score per option, whatever the number of options

    # ------------------------------------------------------------------ data
    def to_dataset(
        self, spec: TaskSpec, raw: Sequence[Mapping[str, Any]], label_map: LabelMap | None, origin: str
    ) -> datasets.Dataset:
        """Reader records ``{"context", "question", "options", "label", ...}`` -> the schema (extra keys dropped)."""
        if label_map is not None:
            raise ValueError(f"task {spec.name!r}: multiple-choice labels are option indices; label_map must be None")
        if isinstance(raw, (str, bytes)) or not isinstance(raw, Sequence):
            raise TypeError(f"{origin}: expected a list of records; got {type(raw).__name__}")
        if not raw:
            raise ValueError(f"task {spec.name!r}: {origin} holds no examples")
        records = [check_example(record, f"task {spec.name!r}: {origin}, example {i}") for i, record in enumerate(raw)]
        columns = {column: [record[column] for record in records] for column in self.columns}
        return datasets.Dataset.from_dict(columns, features=FEATURES)

    def from_hub(self, spec: TaskSpec, hub: HubSource, raw: datasets.Dataset, origin: str) -> datasets.Dataset:
        unknown = sorted(set(hub.columns) - set(HUB_FIELDS))
        if unknown or "options" not in hub.columns or ("context" not in hub.columns and "question" not in hub.columns):
            raise ValueError(
                f"task {spec.name!r}: HubSource.columns must map options and context and/or question (and label or "
                f"answer) to Hub columns, keys from {list(HUB_FIELDS)}; got {dict(hub.columns)}"
            )
        option_columns = [column.strip() for column in hub.columns["options"].split(",")]
        answer = hub.columns.get("answer")
        label = None if answer else hub.columns.get("label", hub.label)
        wanted = [hub.columns.get("context"), hub.columns.get("question"), *option_columns, answer, label]
        missing = [column for column in wanted if column is not None and column not in raw.column_names]
        if missing:
            raise ValueError(f"{origin} lacks columns {missing}; it has {raw.column_names}")
        records = []
        for number, row in enumerate(raw):
            where = f"task {spec.name!r}: {origin}, row {number}"
            options = row[option_columns[0]] if len(option_columns) == 1 else [row[c] for c in option_columns]
            options = list(options) if isinstance(options, (list, tuple)) else options
            if answer:
                hits = [i for i, option in enumerate(options or []) if option == row[answer]]
                if len(hits) != 1:
                    raise ValueError(f"{where}: answer {row[answer]!r} is not exactly one of the options {options!r}")
                gold: Any = hits[0]
            else:
                gold = row[label]
                if gold == hub.missing_label:
                    continue
            records.append(
                {
                    "context": _text(row.get(hub.columns.get("context", ""), "")),
                    "question": _text(row.get(hub.columns.get("question", ""), "")),
                    "options": options,
                    "label": gold,
                }
            )
        if not records:
            raise ValueError(f"task {spec.name!r}: {origin} has no gold labels")
        return self.to_dataset(spec, records, None, origin)

    def preprocess(
        self, spec: TaskSpec, dataset: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int
    ) -> datasets.Dataset:
        """``input_ids`` (``[choices][tokens]`` per example), ``attention_mask`` (/ ``token_type_ids``), ``labels``,
        and ``length`` (the longest option's token count, for ``group_by_length``; the collator drops it)."""
        self.check_dataset(dataset)

        def encode(batch: dict[str, list[Any]]) -> dict[str, Any]:
            examples = [dict(zip(batch, values)) for values in zip(*batch.values())]
            encoded: dict[str, Any] = dict(encode_choices(tokenizer, examples, max_length))
            encoded["labels"] = batch["label"]
            encoded["length"] = [max(map(len, options)) for options in encoded["input_ids"]]
            return encoded

        return dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc="tokenize")

    def collator(
        self, spec: TaskSpec, tokenizer: PreTrainedTokenizerBase
    ) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
        return collator_for(tokenizer)

    # ------------------------------------------------------------------ scoring
    def metrics_fn(
        self, spec: TaskSpec, dataset: datasets.Dataset, features: datasets.Dataset, tokenizer: PreTrainedTokenizerBase
    ) -> MetricsFn:
        def score(prediction: Any) -> dict[str, float]:
            logits = prediction.predictions
            logits = np.asarray(logits[0] if isinstance(logits, tuple) else logits)
            if logits.ndim != 2:
                raise ValueError(f"multiple-choice logits must be [examples, choices]; got shape {logits.shape}")
            labels = np.asarray(prediction.label_ids).reshape(-1)
            return {"accuracy": choice_accuracy(logits.argmax(axis=-1).tolist(), labels.tolist())}

        return score

    # ------------------------------------------------------------------ inference
    def is_single_input(self, inputs: Any) -> bool:
        """One example is a dict; a list of dicts is a batch."""
        return isinstance(inputs, Mapping)

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
        **options: Any,
    ) -> list[dict[str, Any]]:
        """``inputs``: dicts ``{"context", "question" (optional), "options"}`` (a ``label`` key is ignored), with any
        number (>= 2) of options each. Returns ``{"label": index, "option": text, "score": its probability,
        "scores": [probability of each option]}`` per input."""
        if options:
            raise TypeError(f"unexpected options for {self.name} prediction: {sorted(options)}")
        examples = []
        for number, example in enumerate(inputs):
            unknown = sorted(set(example) - {*self.columns}) if isinstance(example, Mapping) else []
            if unknown:
                raise ValueError(
                    f"input {number}: unknown keys {unknown}; a multiple-choice input has context, question, options"
                )
            examples.append(check_example(example, f"input {number}", labelled=False))
        collate = collator_for(tokenizer)
        device = next(model.parameters()).device
        results: list[dict[str, Any] | None] = [None] * len(examples)
        for start in range(0, len(examples), batch_size):
            chunk = range(start, min(start + batch_size, len(examples)))
            by_count: dict[int, list[int]] = {}
            for index in chunk:  # one forward pass per option count: a batch cannot mix counts
                by_count.setdefault(len(examples[index]["options"]), []).append(index)
            for group in by_count.values():
                encoded = encode_choices(tokenizer, [examples[i] for i in group], max_length)
                features = [{name: values[k] for name, values in encoded.items()} for k in range(len(group))]
                batch = {name: tensor.to(device) for name, tensor in collate(features).items()}
                probabilities = model(**batch, head=head).logits.float().softmax(dim=-1).cpu()
                for index, row in zip(group, probabilities.tolist()):
                    best = max(range(len(row)), key=row.__getitem__)
                    results[index] = {
                        "label": best, "option": examples[index]["options"][best], "score": row[best], "scores": row,
                    }  # fmt: skip
        return [result for result in results if result is not None]


def collator_for(tokenizer: PreTrainedTokenizerBase) -> ChoiceCollator:
    """A ``ChoiceCollator`` with the tokenizer's pad id (0 where it has none: padding is masked anyway) and side."""
    pad = getattr(tokenizer, "pad_token_id", None)
    return ChoiceCollator(pad_token_id=0 if pad is None else int(pad), padding_side=tokenizer.padding_side)


def _text(value: Any) -> str:
    """A Hub text field as a str: lists (DREAM's dialogue turns) are joined with newlines, as the local reader does."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return "\n".join(str(line).strip() for line in value)
    return str(value)


register_task_type(MultipleChoiceType())
