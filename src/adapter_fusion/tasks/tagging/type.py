"""Token classification (NER, POS tagging): the ``token_classification`` task type (its tasks are in
``catalogue.py``).

Schema of a split: ``tokens`` (the words of a sentence, list of str) and ``tags`` (one ``ClassLabel`` id over
``TaskSpec.label_names`` per word). Words are tokenised into sub-tokens; the FIRST sub-token of each word carries
the word's label, the other sub-tokens and the special tokens carry -100 (no loss, not scored; ``align_labels``).

Scoring (``metrics_fn``) is per word, against the full gold sentence of the eval dataset: the tag predicted for a
word is the argmax at its first sub-token. Words the model never sees — cut off by ``max_length``, or words that
tokenise to no sub-token at all — have no prediction: they count as ``"O"`` (no entity) for the entity-level
``precision`` / ``recall`` / ``f1`` (seqeval's default mode, i.e. CoNLL ``conlleval``: an entity counts only when its
type and both boundaries match) and as errors for token ``accuracy``. So truncation can only lower a score; it never
drops gold entities or words from the reference.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import datasets
import numpy as np
import torch
from transformers import DataCollatorForTokenClassification

from adapter_fusion.tasks.base import HubSource, LabelMap, TaskSpec
from adapter_fusion.tasks.tagging.features import casing_ids
from adapter_fusion.tasks.tagging.metrics import ENTITY_METRICS, TAGGING_METRICS, tag_scores
from adapter_fusion.tasks.types import MetricsFn, TaskType, register_task_type

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from adapter_fusion.models.model import AdapterModel

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
"""Label of sub-tokens that carry no loss and are not scored."""
METADATA_COLUMNS = ("word_ids",)
"""Feature columns ``metrics_fn`` reads that the collator drops before the model sees the batch."""
CONLLU_EMPTY = "_"
"""CoNLL-U's "no value": the tag of multiword-token rows on the Hub's ``universal_dependencies`` (dropped there, as
``ConlluReader`` skips them locally)."""
_IOB_TAG = re.compile(r"^[BI]-.+$")


# --------------------------------------------------------------------------------------------------- pure helpers
def align_labels(word_ids: Sequence[int | None], word_labels: Sequence[int]) -> list[int]:
    """Sub-token labels from word labels: the first sub-token of word ``w`` gets ``word_labels[w]``; the later
    sub-tokens of a word and special tokens (``None``) get -100.

    Args:
        word_ids: per sub-token, the index of its word or None (``BatchEncoding.word_ids(i)``).
        word_labels: one label id per word.

    >>> align_labels([None, 0, 1, 1, 1, 2, None], [3, 0, 5])
    [-100, 3, 0, -100, -100, 5, -100]
    """
    labels, seen = [], set()
    for word in word_ids:
        if word is None or word in seen:
            labels.append(IGNORE_INDEX)
            continue
        if not 0 <= word < len(word_labels):
            raise ValueError(f"word id {word} is outside the {len(word_labels)} word labels {list(word_labels)}")
        seen.add(word)
        labels.append(int(word_labels[word]))
    return labels


def is_iob(tags: Sequence[str]) -> bool:
    """Whether ``tags`` is an IOB tag set: ``"O"`` plus ``B-TYPE`` / ``I-TYPE`` tags (IOB1 or IOB2)."""
    return "O" in tags and len(tags) > 1 and all(tag == "O" or _IOB_TAG.match(tag) for tag in tags)


def iob_entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Entities ``(type, start, end)`` (``end`` exclusive: words ``start:end``) in a sentence of IOB tags, decoded
    as seqeval's default mode and ``conlleval`` do: ``B-X`` starts an entity; ``I-X`` continues one of type X and
    otherwise starts one (IOB1, or a stray ``I-``); ``O``, ``B-`` and a change of type end it."""
    entities: list[tuple[str, int, int]] = []
    kind: str | None = None
    start = 0
    for index, tag in enumerate((*tags, "O")):
        prefix, _, tag_type = tag.partition("-")
        if kind is not None and (prefix != "I" or tag_type != kind):
            entities.append((kind, start, index))
            kind = None
        if prefix in ("B", "I") and tag_type and kind is None:
            kind, start = tag_type, index
    return entities


def split_words(item: Any, index: int = 0) -> list[str]:
    """One input to ``predict`` as its list of words: a text is split on whitespace; a list of words is kept."""
    if isinstance(item, str):
        words = item.split()
    elif isinstance(item, (list, tuple)) and all(isinstance(word, str) for word in item):
        words = list(item)
        bad = [word for word in words if not word or word != word.strip() or len(word.split()) != 1]
        if bad:
            raise ValueError(
                f"input {index}: a list of strings is ONE pre-split sentence, and its words must be non-empty and "
                f"free of whitespace; got {bad[0]!r}. To tag several texts pass a list of word lists "
                f"([text.split() for text in texts]) or call predict once per text"
            )
    else:
        raise TypeError(
            f"input {index}: expected a text (str) or a list of words (list of str); got {type(item).__name__}: "
            f"{item!r}"
        )
    if not words:
        raise ValueError(f"input {index} has no words: {item!r}")
    return words


# ----------------------------------------------------------------------------------------------------- task type
class TokenClassificationCollator:
    """Drops the metadata columns (``word_ids``), then pads like ``DataCollatorForTokenClassification`` (labels
    padded with -100) and pads ``casing_ids`` with 0 on the tokenizer's padding side."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.inner = DataCollatorForTokenClassification(tokenizer, label_pad_token_id=IGNORE_INDEX)
        self.padding_side = getattr(tokenizer, "padding_side", "right")

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        casings = [f["casing_ids"] for f in features] if features and "casing_ids" in features[0] else None
        drop = (*METADATA_COLUMNS, "casing_ids")
        batch = self.inner([{k: v for k, v in f.items() if k not in drop} for f in features])
        if casings is not None:
            length = batch["input_ids"].shape[1]
            padded = []
            for ids in casings:
                pad = [0] * (length - len(ids))
                padded.append(pad + list(ids) if self.padding_side == "left" else list(ids) + pad)
            batch["casing_ids"] = torch.tensor(padded, dtype=torch.long)
        return batch


class TokenClassificationType(TaskType):
    """One tag per word: a per-token linear head, cross-entropy over first sub-tokens, entity-level P/R/F1 (IOB
    tag sets, seqeval) or token accuracy (POS)."""

    name = "token_classification"
    head_type = "token_classification"
    columns = ("tokens", "tags")

    def metric_names(self) -> list[str]:
        return list(TAGGING_METRICS)

    def validate_spec(self, spec: TaskSpec) -> None:
        if len(spec.label_names) < 2 or len(set(spec.label_names)) != len(spec.label_names):
            raise ValueError(
                f"task {spec.name!r}: needs at least 2 distinct tags in label_names; got {spec.label_names}"
            )
        entity = [metric for metric in spec.metrics if metric in ENTITY_METRICS]
        if entity and not is_iob(spec.label_names):
            raise ValueError(
                f"task {spec.name!r}: entity metrics {entity} need an IOB tag set ('O', 'B-TYPE', 'I-TYPE'); got "
                f"label_names {list(spec.label_names)}"
            )

    @staticmethod
    def features(spec: TaskSpec) -> datasets.Features:
        tags = datasets.ClassLabel(names=list(spec.label_names))
        return datasets.Features(
            {"tokens": datasets.Sequence(datasets.Value("string")), "tags": datasets.Sequence(tags)}
        )

    # ------------------------------------------------------------------ data
    def to_dataset(
        self, spec: TaskSpec, raw: Sequence[Mapping[str, Any]], label_map: LabelMap | None, origin: str
    ) -> datasets.Dataset:
        """Records ``{"tokens": [...], "tags": [...]}`` (tags as strings) -> the schema. ``label_map``: raw tag ->
        tag name, where the file's tags differ from ``spec.label_names``."""
        ids = spec.label2id
        table = ids if label_map is None else {str(raw_tag): ids[name] for raw_tag, name in label_map.items()}
        if isinstance(raw, Mapping) or not isinstance(raw, Sequence):
            raise TypeError(f"task {spec.name!r}: {origin} must give a list of records; got {type(raw).__name__}")
        tokens_column: list[list[str]] = []
        tags_column: list[list[int]] = []
        for number, record in enumerate(raw):
            where = f"sentence {number} of {origin}"
            if not isinstance(record, Mapping) or "tokens" not in record or "tags" not in record:
                raise ValueError(
                    f"task {spec.name!r}: {where} must be a dict with 'tokens' and 'tags'; got {record!r}"
                )
            tokens, tags = list(record["tokens"]), list(record["tags"])
            if not tokens:
                raise ValueError(f"task {spec.name!r}: {where} is empty (no tokens)")
            if len(tokens) != len(tags):
                raise ValueError(
                    f"task {spec.name!r}: {where} has {len(tokens)} tokens but {len(tags)} tags: {tokens} / {tags}"
                )
            try:
                tags_column.append([table[str(tag)] for tag in tags])
            except KeyError:
                position = next(j for j, tag in enumerate(tags) if str(tag) not in table)
                raise ValueError(
                    f"task {spec.name!r}: tag {tags[position]!r} (word {position}, {tokens[position]!r}) in {where} "
                    f"is not an allowed tag; allowed: {sorted(table)}"
                ) from None
            tokens_column.append([str(token) for token in tokens])
        return datasets.Dataset.from_dict({"tokens": tokens_column, "tags": tags_column}, features=self.features(spec))

    def from_hub(self, spec: TaskSpec, hub: HubSource, raw: datasets.Dataset, origin: str) -> datasets.Dataset:
        """``hub.columns`` maps ``tokens`` and ``tags`` to Hub columns. Tag ids of a ``ClassLabel`` feature are
        mapped to names with the Hub's own names, so any Hub order works; tokens tagged ``"_"`` (CoNLL-U multiword
        tokens) are dropped."""
        tokens_column, tags_column = hub.columns.get("tokens", "tokens"), hub.columns.get("tags")
        if tags_column is None:
            raise ValueError(
                f"task {spec.name!r}: its HubSource.columns must name the 'tags' column; got {hub.columns}"
            )
        missing = [column for column in (tokens_column, tags_column) if column not in raw.column_names]
        if missing:
            raise ValueError(f"{origin} lacks columns {missing}; it has {raw.column_names}")
        inner = getattr(raw.features[tags_column], "feature", None)
        names = inner.names if isinstance(inner, datasets.ClassLabel) else None
        records = []
        for tokens, tags in zip(raw[tokens_column], raw[tags_column]):
            tag_names = [names[tag] for tag in tags] if names is not None else [str(tag) for tag in tags]
            keep = [j for j, tag in enumerate(tag_names) if tag != CONLLU_EMPTY]
            records.append({"tokens": [tokens[j] for j in keep], "tags": [tag_names[j] for j in keep]})
        return self.to_dataset(spec, records, hub.label_map, origin)

    def preprocess(
        self, spec: TaskSpec, dataset: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int
    ) -> datasets.Dataset:
        """input_ids / attention_mask (/ token_type_ids), ``labels`` (``align_labels``), ``casing_ids`` (each
        sub-token's word casing, for heads with ``casing_dim``; the model ignores them otherwise) and ``word_ids``
        (word index per sub-token, -1 for special tokens; metadata for ``metrics_fn``, dropped by the collator).
        Needs a fast tokenizer (``word_ids``); byte-level BPE tokenizers (RoBERTa, GPT-2) need
        ``add_prefix_space=True``."""
        self.check_dataset(dataset)
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(f"token classification needs a fast tokenizer (word_ids); got {type(tokenizer).__name__}")

        def encode(batch: dict[str, list[Any]]) -> dict[str, Any]:
            encoded = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True, max_length=max_length)
            word_ids = [encoded.word_ids(i) for i in range(len(batch["tokens"]))]
            encoded["labels"] = [align_labels(ids, tags) for ids, tags in zip(word_ids, batch["tags"])]
            encoded["word_ids"] = [[-1 if w is None else w for w in ids] for ids in word_ids]
            encoded["casing_ids"] = [casing_ids(words, ids) for words, ids in zip(batch["tokens"], word_ids)]
            return encoded

        return dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc="tokenize")

    def collator(
        self, spec: TaskSpec, tokenizer: PreTrainedTokenizerBase
    ) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
        return TokenClassificationCollator(tokenizer)

    # ------------------------------------------------------------------ scoring
    def metrics_fn(
        self, spec: TaskSpec, dataset: datasets.Dataset, features: datasets.Dataset, tokenizer: PreTrainedTokenizerBase
    ) -> MetricsFn:
        """Scores logits ``[n, seq, num_labels]`` of ``features`` (row i made from ``dataset`` row i) per word
        against ``dataset``'s gold tags; see the module docstring for words without a prediction."""
        gold_ids = [list(tags) for tags in dataset["tags"]]
        word_ids = [list(ids) for ids in features["word_ids"]]
        if len(gold_ids) != len(word_ids):
            raise ValueError(f"features has {len(word_ids)} rows but dataset has {len(gold_ids)}; expected one each")
        names = spec.label_names

        def score(prediction: Any) -> dict[str, float]:
            logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
            predicted, labels = np.asarray(logits).argmax(axis=-1), np.asarray(prediction.label_ids)
            if len(predicted) != len(gold_ids):
                raise ValueError(f"got predictions for {len(predicted)} sentences; the eval set has {len(gold_ids)}")
            true_tags, pred_tags = [], []
            for row, (gold, words) in enumerate(zip(gold_ids, word_ids)):
                tags: list[str | None] = [None] * len(gold)
                for position in np.flatnonzero(labels[row] != IGNORE_INDEX):
                    word = words[position]
                    if word < 0 or labels[row, position] != gold[word]:
                        raise ValueError(
                            f"eval row {row}, position {position}: label {labels[row, position]} does not match the "
                            f"gold tag of word {word}; features and dataset are not aligned row by row"
                        )
                    tags[word] = names[predicted[row, position]]
                true_tags.append([names[tag] for tag in gold])
                pred_tags.append(tags)
            return tag_scores(spec.metrics, true_tags, pred_tags)

        return score

    # ------------------------------------------------------------------ inference
    def is_single_input(self, inputs: Any) -> bool:
        """A text, or one pre-split sentence (a non-empty list of str), is one input."""
        if isinstance(inputs, str):
            return True
        return isinstance(inputs, (list, tuple)) and bool(inputs) and all(isinstance(x, str) for x in inputs)

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
        """``inputs``: texts (split on whitespace) or lists of words. Returns per input ``{"words", "tags",
        "scores"}`` (the tag of each word from its first sub-token, and that tag's probability) and, for IOB tag
        sets, ``"entities"``: ``[{"type", "text", "start_word", "end_word"}]`` with ``end_word`` exclusive
        (``words[start_word:end_word]``). Words cut off by ``max_length`` get tag and score None (with a warning)."""
        if options:
            raise TypeError(f"unexpected options for {self.name} prediction: {sorted(options)}")
        sentences = [split_words(item, index) for index, item in enumerate(inputs)]
        config = model.head_config(head)
        names = config.label_names or tuple(str(i) for i in range(config.num_labels))
        iob = is_iob(names)
        device = next(model.parameters()).device
        results: list[dict[str, Any]] = []
        for start in range(0, len(sentences), batch_size):
            chunk = sentences[start : start + batch_size]
            encoded = tokenizer(
                chunk, is_split_into_words=True, truncation=True, max_length=max_length, padding=True,
                return_tensors="pt",
            )  # fmt: skip
            word_ids = [encoded.word_ids(row) for row in range(len(chunk))]
            casings = [casing_ids(words, ids) for words, ids in zip(chunk, word_ids)]
            probabilities = (
                model(**encoded.to(device), casing_ids=torch.tensor(casings, device=device), head=head)
                .logits.float()
                .softmax(dim=-1)
                .cpu()
            )
            best_scores, best = probabilities.max(dim=-1)
            for row, words in enumerate(chunk):
                tags: list[str | None] = [None] * len(words)
                scores: list[float | None] = [None] * len(words)
                for position, word in enumerate(word_ids[row]):
                    if word is not None and tags[word] is None:
                        tags[word], scores[word] = names[int(best[row, position])], float(best_scores[row, position])
                if None in tags:
                    warnings.warn(
                        f"input {start + row}: {tags.count(None)} of {len(words)} words got no tag (cut off by "
                        f"max_length={max_length}, or no sub-tokens); their tag and score are None",
                        stacklevel=3,  # the caller of the torch.no_grad wrapper
                    )
                result: dict[str, Any] = {"words": words, "tags": tags, "scores": scores}
                if iob:
                    result["entities"] = [
                        {"type": kind, "text": " ".join(words[s:e]), "start_word": s, "end_word": e}
                        for kind, s, e in iob_entities([tag or "O" for tag in tags])
                    ]
                results.append(result)
        return results


register_task_type(TokenClassificationType())
