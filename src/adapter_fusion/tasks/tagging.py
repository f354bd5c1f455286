"""Token classification (NER, POS tagging): the ``token_classification`` task type and its registered tasks.

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

from adapter_fusion.heads.tagging import casing_ids
from adapter_fusion.tasks.base import HubSource, LocalFile, LocalSource, TaskSpec, carve, register_task
from adapter_fusion.tasks.formats import ConllReader, ConlluReader, TabTagReader
from adapter_fusion.tasks.seq_metrics import entity_scores, token_accuracy
from adapter_fusion.tasks.types import MetricsFn, TaskType, register_task_type

if TYPE_CHECKING:
    from adapter_fusion.tasks.base import LabelMap

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
"""Label of sub-tokens that carry no loss and are not scored."""
ENTITY_METRICS = ("precision", "recall", "f1")
TAGGING_METRICS = (*ENTITY_METRICS, "accuracy")
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

    def __init__(self, tokenizer: Any) -> None:
        from transformers import DataCollatorForTokenClassification

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
        self, spec: TaskSpec, dataset: datasets.Dataset, tokenizer: Any, max_length: int
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

    def collator(self, spec: TaskSpec, tokenizer: Any) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
        return TokenClassificationCollator(tokenizer)

    # ------------------------------------------------------------------ scoring
    def metrics_fn(
        self, spec: TaskSpec, dataset: datasets.Dataset, features: datasets.Dataset, tokenizer: Any
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
        model: Any,
        tokenizer: Any,
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
            probabilities = model(
                **encoded.to(device), casing_ids=torch.tensor(casings, device=device), head=head
            ).logits.float().softmax(dim=-1).cpu()
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


def tag_scores(
    metrics: Sequence[str], true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str | None]]
) -> dict[str, float]:
    """``metrics`` (of ``TAGGING_METRICS``) for word-level tags; a predicted None (no prediction) counts as
    ``"O"`` for the entity metrics and as an error for ``accuracy``."""
    scores: dict[str, float] = {}
    if any(metric in ENTITY_METRICS for metric in metrics):
        scores.update(entity_scores(true_tags, [[tag or "O" for tag in tags] for tags in pred_tags]))
    if "accuracy" in metrics:
        missing = object()  # equal to no gold tag
        scores["accuracy"] = token_accuracy(
            true_tags,
            [[missing if tag is None else tag for tag in tags] for tags in pred_tags],  # type: ignore[misc]
        )
    return {metric: scores[metric] for metric in metrics}


register_task_type(TokenClassificationType())


# ---------------------------------------------------------------------------------------------------------- tasks
CONLL_NER_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")
"""CoNLL-2003 NER tags in the order of the Hub's ``ner_tags`` feature."""
CONLL_POS_TAGS = (
    '"', "''", "#", "$", "(", ")", ",", ".", ":", "``", "CC", "CD", "DT", "EX", "FW", "IN", "JJ", "JJR", "JJS", "LS",
    "MD", "NN", "NNP", "NNPS", "NNS", "NN|SYM", "PDT", "POS", "PRP", "PRP$", "RB", "RBR", "RBS", "RP", "SYM", "TO",
    "UH", "VB", "VBD", "VBG", "VBN", "VBP", "VBZ", "WDT", "WP", "WP$", "WRB",
)  # fmt: skip
"""The 47 Penn Treebank tags of CoNLL-2003 in the order of the Hub's ``pos_tags`` feature (the local train and
valid files use 45 of them: no ``#`` and no ``` `` ```)."""
WNUT17_TAGS = (
    "O", "B-corporation", "I-corporation", "B-creative-work", "I-creative-work", "B-group", "I-group",
    "B-location", "I-location", "B-person", "I-person", "B-product", "I-product",
)  # fmt: skip
"""WNUT-17 tags (6 entity types) in the order of the Hub's ``ner_tags`` feature."""
WIKIANN_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")
"""WikiANN tags in the order of the Hub's ``ner_tags`` feature."""
UPOS_TAGS = (
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT", "SCONJ",
    "SYM", "VERB", "X",
)  # fmt: skip
"""The 17 universal POS tags of UD v2, in the alphabetical order of the UD documentation (the Hub's ``upos``
feature has another order and an extra ``_``; ``from_hub`` maps by name)."""
CONLL_TEST_FRACTION = 0.1
NER_METRICS = ENTITY_METRICS
POS_METRICS = ("accuracy",)


def tag_hub(path: str, config: str | None, tags: str, **kwargs: Any) -> HubSource:
    """A Hub dataset with a ``tokens`` column and the tag column ``tags`` (a sequence of ``ClassLabel`` ids)."""
    return HubSource(path, config, columns={"tokens": "tokens", "tags": tags}, **kwargs)


def conll2003_local(tag_column: int) -> LocalSource:
    """``conll2003/valid.txt`` is the validation split; test is 10% of ``train.txt`` carved off with ``CARVE_SEED``,
    train the other 90%."""
    reader = ConllReader(tag_column=tag_column)
    train = LocalFile(("conll2003/train.txt",), reader)
    return LocalSource(
        {**carve(train, {"test": CONLL_TEST_FRACTION}), "validation": LocalFile(("conll2003/valid.txt",), reader)}
    )


_CONLL_NOTE = (
    "Local: conll2003/valid.txt (3,250 sentences) is the validation split; there is no local test file, so test is "
    "10% of train.txt (14,041) carved off with CARVE_SEED (1,404) and train the other 90% (12,637). Hub: "
    "eriktks/conll2003 (train 14,041 / validation 3,250 / test 3,453, the official test set)."
)

register_task(TaskSpec(
    name="conll2003_ner", task_type="token_classification", label_names=CONLL_NER_TAGS, is_pair=False,
    metrics=NER_METRICS, main_metric="f1", aliases=("ner", "conll2003"),
    description="CoNLL-2003 English NER: PER, ORG, LOC, MISC. The tags are IOB2 (every entity starts with B-; "
                "checked on both local files) and are kept as in the file; entity-level precision/recall/F1 as "
                "seqeval's default mode (conlleval). " + _CONLL_NOTE,
    local=conll2003_local(tag_column=3),
    hub=tag_hub("eriktks/conll2003", None, "ner_tags"),
))  # fmt: skip

register_task(TaskSpec(
    name="conll2003_pos", task_type="token_classification", label_names=CONLL_POS_TAGS, is_pair=False,
    metrics=POS_METRICS, main_metric="accuracy", aliases=("pos",),
    description="CoNLL-2003 English POS tagging: the 47 Penn Treebank tags of column 2 (Hub order), token accuracy. "
                + _CONLL_NOTE,
    local=conll2003_local(tag_column=1),
    hub=tag_hub("eriktks/conll2003", None, "pos_tags"),
))  # fmt: skip

_WNUT = TabTagReader()
register_task(TaskSpec(
    name="wnut17", task_type="token_classification", label_names=WNUT17_TAGS, is_pair=False,
    metrics=NER_METRICS, main_metric="f1", aliases=("wnut_17", "wnut"),
    description="WNUT-17 emerging and rare entities in social media text: corporation, creative-work, group, "
                "location, person, product (IOB2), entity-level precision/recall/F1 (seqeval). Local: "
                "wnut17/wnut17train.conll (3,394 sentences), emerging.dev.conll (1,009) as validation, "
                "emerging.test.annotated (1,287) as test. Hub: leondz/wnut_17 (formerly wnut_17).",
    local=LocalSource({
        "train": LocalFile(("wnut17/wnut17train.conll",), _WNUT),
        "validation": LocalFile(("wnut17/emerging.dev.conll",), _WNUT),
        "test": LocalFile(("wnut17/emerging.test.annotated",), _WNUT),
    }),
    hub=tag_hub("leondz/wnut_17", None, "ner_tags"),
))  # fmt: skip

_WIKIANN = TabTagReader(strip_prefix="en:")
register_task(TaskSpec(
    name="wikiann_en", task_type="token_classification", label_names=WIKIANN_TAGS, is_pair=False,
    metrics=NER_METRICS, main_metric="f1", aliases=("wikiann",),
    description="WikiANN English NER: PER, ORG, LOC (IOB2), entity-level precision/recall/F1 (seqeval). Local: "
                "wikiann_en/train (20,000 sentences), dev (10,000) as validation, test (10,000); the 'en:' prefix of "
                "every token is stripped. Hub: unimelb-nlp/wikiann 'en'.",
    local=LocalSource({
        "train": LocalFile(("wikiann_en/train",), _WIKIANN),
        "validation": LocalFile(("wikiann_en/dev",), _WIKIANN),
        "test": LocalFile(("wikiann_en/test",), _WIKIANN),
    }),
    hub=tag_hub("unimelb-nlp/wikiann", "en", "ner_tags"),
))  # fmt: skip

_UD = ConlluReader(column="upos")
register_task(TaskSpec(
    name="ud_english_lines_pos", task_type="token_classification", label_names=UPOS_TAGS, is_pair=False,
    metrics=POS_METRICS, main_metric="accuracy", aliases=("upos", "ud_pos"),
    description="UD English-LinES universal POS tagging: the 17 UPOS tags of the syntactic words (multiword-token "
                "ranges and empty nodes skipped), token accuracy. Local: ud_english_lines/en_lines-ud-train.conllu "
                "(3,457 sentences), -dev (1,118) as validation, -test (1,121). Hub: universal_dependencies "
                "'en_lines' (column upos).",
    local=LocalSource({
        "train": LocalFile(("ud_english_lines/en_lines-ud-train.conllu",), _UD),
        "validation": LocalFile(("ud_english_lines/en_lines-ud-dev.conllu",), _UD),
        "test": LocalFile(("ud_english_lines/en_lines-ud-test.conllu",), _UD),
    }),
    hub=tag_hub("universal_dependencies", "en_lines", "upos"),
))  # fmt: skip
