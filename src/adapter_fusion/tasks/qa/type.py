"""Extractive question answering (SQuAD v1.1 style): the ``extractive_qa`` task type (its tasks are in
``catalogue.py``).

Schema of a split: ``id`` (str), ``title`` (the article; splits are carved by it), ``context``, ``question`` and
``answers`` (``{"text": [...], "answer_start": [...]}``, character offsets into the context; at least one answer per
question, each checked against the context). Unanswerable questions (SQuAD v2) are not supported.

Features (``preprocess``): each (question, context) pair is cut into overlapping windows of ``max_length`` tokens
(``spans.make_windows``; the overlap is ``doc_stride`` tokens, by default ``min(128, max_length // 4)``). A window
is labelled ``labels = [start_token, end_token]`` of the FIRST answer when the whole answer lies in its context
part, else ``[0, 0]`` (the CLS token: "no answer in this window"). Each feature keeps ``example_index`` and
``offset_mapping`` (None outside the context) for decoding; the collator drops both.

Scoring (``metrics_fn``): per example, the best valid span over all its windows (``spans.decode_examples``:
start/end among context tokens, end >= start, at most ``max_answer_tokens`` tokens), cut from the original context
and scored with SQuAD v1.1 ``exact_match`` and ``f1`` (fractions in [0, 1]) against all gold answers.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
import numpy as np
import torch

from adapter_fusion.tasks.base import HubSource, LabelMap, TaskSpec
from adapter_fusion.tasks.qa.metrics import squad_scores
from adapter_fusion.tasks.qa.readers import read_squad
from adapter_fusion.tasks.qa.spans import (
    MAX_ANSWER_TOKENS,
    NO_ANSWER,
    TOP_K,
    SpanCollator,
    answer_spans,
    decode_examples,
    doc_stride_for,
    label_window,
    make_windows,
)
from adapter_fusion.tasks.types import MetricsFn, TaskType, as_mapping, register_task_type

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from adapter_fusion.models.model import AdapterModel

logger = logging.getLogger(__name__)

QA_METRICS = ("exact_match", "f1")
METADATA_COLUMNS = ("example_index", "offset_mapping")
"""Feature columns ``metrics_fn`` reads that the collator drops before the model sees the batch."""
QA_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "title": datasets.Value("string"),
        "context": datasets.Value("string"),
        "question": datasets.Value("string"),
        "answers": {
            "text": datasets.Sequence(datasets.Value("string")),
            "answer_start": datasets.Sequence(datasets.Value("int32")),
        },
    }
)


# ---------------------------------------------------------------------------------------------------- task type
class ExtractiveQAType(TaskType):
    """SQuAD-style extractive QA: a span head (start/end logits per token), windows over long contexts, best-span
    decoding across windows, SQuAD exact match and F1."""

    name = "extractive_qa"
    head_type = "span"
    columns = ("id", "title", "context", "question", "answers")

    def __init__(
        self, doc_stride: int | None = None, max_answer_tokens: int = MAX_ANSWER_TOKENS, top_k: int = TOP_K
    ) -> None:
        self.doc_stride = doc_stride
        """Overlap of consecutive windows in tokens; None: ``min(128, max_length // 4)`` (``doc_stride_for``)."""
        self.max_answer_tokens = max_answer_tokens
        """Longest answer decoding considers, in tokens."""
        self.top_k = top_k
        """Start and end candidates per window in decoding."""

    def validate_spec(self, spec: TaskSpec) -> None:
        if spec.label_names or spec.is_pair:
            raise ValueError(
                f"task {spec.name!r}: an extractive_qa task has label_names=() and is_pair=False; got "
                f"label_names={spec.label_names}, is_pair={spec.is_pair}"
            )

    def metric_names(self) -> list[str]:
        return list(QA_METRICS)

    def num_labels(self, spec: TaskSpec) -> int:
        return 2  # start and end scores

    # ------------------------------------------------------------------ data
    def to_dataset(self, spec: TaskSpec, raw: Any, label_map: LabelMap | None, origin: str) -> datasets.Dataset:
        """``raw``: records ``{"id", "title", "context", "question", "answers"}`` (``readers.SquadReader``)."""
        rows: dict[str, list[Any]] = {column: [] for column in self.columns}
        for number, record in enumerate(raw):
            record = as_mapping(record, f"{origin}: record {number}")
            answer_spans(record, f"task {spec.name!r}, {origin}")
            rows["id"].append(str(record.get("id", number)))
            rows["title"].append(str(record.get("title", "")))
            rows["context"].append(record["context"])
            rows["question"].append(record["question"])
            answers = record["answers"]
            rows["answers"].append(
                {"text": list(answers["text"]), "answer_start": [int(s) for s in answers["answer_start"]]}
            )
        if not rows["id"]:
            raise ValueError(f"task {spec.name!r}: {origin} holds no questions")
        return datasets.Dataset.from_dict(rows, features=QA_FEATURES)

    def from_hub(self, spec: TaskSpec, hub: HubSource, raw: datasets.Dataset, origin: str) -> datasets.Dataset:
        """Hub rows (one per question) regrouped as SQuAD JSON and read with ``read_squad`` so that answers are
        checked (and, for a ``QAHubSource`` with ``realign``, repaired) exactly as for local files."""
        column = {name: hub.columns.get(name, name) for name in self.columns}
        missing = [column[name] for name in ("context", "question", "answers") if column[name] not in raw.column_names]
        if missing:
            raise ValueError(f"{origin} lacks columns {missing}; it has {raw.column_names}")
        has_title, has_id = column["title"] in raw.column_names, column["id"] in raw.column_names
        articles: dict[tuple[str, str], dict[str, Any]] = {}  # (title, context) -> a SQuAD article of one paragraph
        paragraph_titles: dict[str, str] = {}  # without titles on the Hub, each paragraph is its own "article"
        for number, row in enumerate(raw):
            context = row[column["context"]]
            if has_title:
                title = str(row[column["title"]])
            else:
                title = paragraph_titles.setdefault(context, f"paragraph {len(paragraph_titles)}")
            article = articles.setdefault(
                (title, context), {"title": title, "paragraphs": [{"context": context, "qas": []}]}
            )
            answers = row[column["answers"]]
            article["paragraphs"][0]["qas"].append({
                "id": str(row[column["id"]]) if has_id else str(number),
                "question": row[column["question"]],
                "answers": [
                    {"text": text, "answer_start": int(start)}
                    for text, start in zip(answers["text"], answers["answer_start"])
                ],
            })  # fmt: skip
        data = list(articles.values())
        realign = getattr(hub, "realign", False)
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "squad.json"
            path.write_text(json.dumps({"data": data}), encoding="utf-8")
            records, counts = read_squad(path, realign=realign)
        logger.info("%s: %s", origin, counts)
        return self.to_dataset(spec, records, None, origin)

    def doc_stride_for(self, max_length: int) -> int:
        return doc_stride_for(max_length, self.doc_stride)

    def preprocess(
        self, spec: TaskSpec, dataset: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int
    ) -> datasets.Dataset:
        """Windows with ``labels [start_token, end_token]`` of the first answer, plus ``example_index`` (row in
        ``dataset``) and ``offset_mapping`` (context offsets, None elsewhere) for decoding."""
        self.check_dataset(dataset)
        stride = self.doc_stride_for(max_length)
        where = f"task {spec.name!r}"
        unlabelled = 0

        def encode(batch: dict[str, list[Any]], indices: list[int]) -> dict[str, Any]:
            nonlocal unlabelled
            examples = [{key: batch[key][i] for key in batch} for i in range(len(indices))]
            spans = [answer_spans(example, where)[0] for example in examples]
            windows = make_windows(tokenizer, batch["question"], batch["context"], max_length, stride, batch["id"])
            windows["labels"] = [
                list(label_window(offsets, *spans[example]))
                for example, offsets in zip(windows["example_index"], windows["offset_mapping"])
            ]
            labelled = {
                e for e, label in zip(windows["example_index"], windows["labels"]) if tuple(label) != NO_ANSWER
            }
            unlabelled += len(examples) - len(labelled)
            windows["example_index"] = [indices[example] for example in windows["example_index"]]
            return windows

        features = dataset.map(
            encode, batched=True, with_indices=True, remove_columns=dataset.column_names, desc="tokenize windows"
        )
        if unlabelled:
            logger.warning(
                "%s: %d of %d examples have no window holding their whole answer (answers longer than a window): "
                "all their windows are labelled 'no answer'", where, unlabelled, len(dataset)
            )  # fmt: skip
        return features

    def collator(
        self, spec: TaskSpec, tokenizer: PreTrainedTokenizerBase
    ) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
        return SpanCollator(tokenizer.pad_token_id or 0)

    # ------------------------------------------------------------------ scoring
    def metrics_fn(
        self, spec: TaskSpec, dataset: datasets.Dataset, features: datasets.Dataset, tokenizer: PreTrainedTokenizerBase
    ) -> MetricsFn:
        contexts = dataset["context"]
        references = [answers["text"] for answers in dataset["answers"]]
        example_index, offsets = features["example_index"], features["offset_mapping"]

        def score(prediction: Any) -> dict[str, float]:
            logits = prediction.predictions
            logits = logits[0] if isinstance(logits, tuple) else logits
            if len(logits) != len(offsets):
                raise ValueError(f"got logits for {len(logits)} windows; the eval features have {len(offsets)}")
            spans = decode_examples(
                np.asarray(logits), example_index, offsets, len(contexts),
                top_k=self.top_k, max_answer_tokens=self.max_answer_tokens,
            )  # fmt: skip
            answers = [
                "" if span is None else context[span.start : span.end] for span, context in zip(spans, contexts)
            ]
            scores = squad_scores(answers, references)
            return {name: scores[name] for name in spec.metrics}

        return score

    # ------------------------------------------------------------------ inference
    def is_single_input(self, inputs: Any) -> bool:
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
        """``inputs``: ``{"question": str, "context": str}`` each. Returns ``{"answer", "start", "end", "score"}``
        per input: the answer text ``context[start:end]`` and its probability (start x end softmax over the
        context tokens of the window it was found in). Options: ``max_answer_tokens``, ``top_k``, ``doc_stride``."""
        unknown = sorted(set(options) - {"max_answer_tokens", "top_k", "doc_stride"})
        if unknown:
            raise TypeError(
                f"unexpected options for {self.name} prediction: {unknown}; allowed: doc_stride, "
                "max_answer_tokens, top_k"
            )
        questions, contexts = [], []
        for index, item in enumerate(inputs):
            if not isinstance(item, Mapping) or not {"question", "context"} <= set(item):
                raise ValueError(
                    f"extractive_qa inputs are {{'question': str, 'context': str}}; inputs[{index}] is {item!r}"
                )
            for key in ("question", "context"):
                if not isinstance(item[key], str) or not item[key].strip():
                    raise ValueError(f"inputs[{index}]: {key!r} must be a non-empty string; got {item[key]!r}")
            questions.append(item["question"])
            contexts.append(item["context"])
        stride = doc_stride_for(max_length, options.get("doc_stride", self.doc_stride))
        collate = SpanCollator(tokenizer.pad_token_id or 0)
        device = next(model.parameters()).device
        results: list[dict[str, Any]] = []
        for begin in range(0, len(inputs), batch_size):
            chunk_q, chunk_c = questions[begin : begin + batch_size], contexts[begin : begin + batch_size]
            names = [f"inputs[{i}]" for i in range(begin, begin + len(chunk_q))]
            windows = make_windows(tokenizer, chunk_q, chunk_c, max_length, stride, names)
            rows = [dict(zip(windows, values)) for values in zip(*windows.values())]
            logits: list[np.ndarray] = []
            for start in range(0, len(rows), batch_size):
                batch = {k: v.to(device) for k, v in collate(rows[start : start + batch_size]).items()}
                logits.extend(model(**batch, head=head).logits.float().cpu().numpy())
            spans = decode_examples(
                logits, windows["example_index"], windows["offset_mapping"], len(chunk_q),
                top_k=options.get("top_k", self.top_k),
                max_answer_tokens=options.get("max_answer_tokens", self.max_answer_tokens),
            )  # fmt: skip
            for span, context in zip(spans, chunk_c):
                if span is None:
                    results.append({"answer": "", "start": 0, "end": 0, "score": 0.0})
                else:
                    results.append(
                        {
                            "answer": context[span.start : span.end],
                            "start": span.start,
                            "end": span.end,
                            "score": span.probability,
                        }
                    )
        return results


register_task_type(ExtractiveQAType())
