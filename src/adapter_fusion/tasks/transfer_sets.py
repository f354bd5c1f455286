"""Larger training sets for source adapters (the ``Larger training sets`` section of the shared data README).

IMDB 25k/25k, BoolQ, MNLI with about 45k extra NLI pairs, QNLI pairs derived from SQuAD v1.1 train, WikiQA and
SQuAD v1.1 itself. Each is registered under its usual name and loads from the local data directory or the Hub.
The readers here are small frozen dataclasses like those of ``tasks.readers`` (one split's file paths in, raw
columns out).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from adapter_fusion.tasks.base import Carve, HubSource, LocalFile, LocalSource, TaskSpec, register_task
from adapter_fusion.tasks.classification import BINARY_NLI_LABELS, GLUE_HUB, LMBFF, NLI_LABELS, SENTIMENT_LABELS
from adapter_fusion.tasks.files import open_text
from adapter_fusion.tasks.formats import SquadReader
from adapter_fusion.tasks.qa import QAHubSource
from adapter_fusion.tasks.readers import JsonReader, RawColumns, TsvReader
from adapter_fusion.tasks.readers import _single as _one

IMDB_VALIDATION_ROWS = 2000
"""Rows of IMDB's train file carved off (``CARVE_SEED``) as the validation split used for model selection."""


@dataclass(frozen=True)
class JsonLinesReader:
    """One JSON object per line (optionally gzipped), e.g. ``imdb/train.jsonl.gz`` and ``boolq/dev.jsonl.gz``."""

    text_a: str
    """Field of the first text."""
    label: str
    """Field of the label (kept raw: a string, bool or int)."""
    text_b: str | None = None
    """Field of the second text, or None for single-text files."""

    def __call__(self, paths: Sequence[Path]) -> RawColumns:
        path = _one(paths, "JsonLinesReader")
        columns = RawColumns([], [], [])
        with open_text(path) as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}:{number}: not a JSON object ({error.msg})") from None
                fields = [self.text_a, self.label] + ([self.text_b] if self.text_b else [])
                missing = [name for name in fields if not isinstance(record, dict) or name not in record]
                if missing:
                    raise ValueError(f"{path}:{number}: record lacks field(s) {missing}; expected {fields}")
                columns.text_a.append(str(record[self.text_a]).strip())
                columns.text_b.append(str(record[self.text_b]).strip() if self.text_b else "")
                columns.labels.append(record[self.label])
        return columns


@dataclass(frozen=True)
class CsvPairsReader:
    """Comma-separated files with a header naming ``premise``, ``hypothesis`` and ``label`` (``nli_extra``); several
    files are read one after the other into one split."""

    text_a: str = "premise"
    text_b: str = "hypothesis"
    label: str = "label"

    def __call__(self, paths: Sequence[Path]) -> RawColumns:
        columns = RawColumns([], [], [])
        for path in paths:
            with open_text(path) as handle:
                rows = csv.DictReader(handle)
                wanted = (self.text_a, self.text_b, self.label)
                if rows.fieldnames is None or any(name not in rows.fieldnames for name in wanted):
                    raise ValueError(f"{path}: header {rows.fieldnames} lacks one of {list(wanted)}")
                for row in rows:
                    columns.text_a.append(row[self.text_a].strip())
                    columns.text_b.append(row[self.text_b].strip())
                    columns.labels.append(row[self.label].strip())
        return columns


@dataclass(frozen=True)
class ConcatReader:
    """Several readers over consecutive groups of the split's paths, their rows concatenated in order."""

    parts: tuple[tuple[int, object], ...]
    """``(number of paths, reader)`` per group, in path order."""

    def __call__(self, paths: Sequence[Path]) -> RawColumns:
        expected = sum(count for count, _ in self.parts)
        if len(paths) != expected:
            raise ValueError(f"ConcatReader expects {expected} paths; got {len(paths)}: {[str(p) for p in paths]}")
        columns = RawColumns([], [], [])
        start = 0
        for count, reader in self.parts:
            part = reader(paths[start : start + count])  # type: ignore[operator]
            start += count
            for mine, theirs in zip(columns, part):
                mine.extend(theirs)
        return columns


_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
_WORD = re.compile(r"\w+")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` character spans of the sentences of ``text`` (a rule-based splitter: a sentence ends at
    ``.``, ``!`` or ``?`` followed by space and an upper-case letter or a digit)."""
    spans, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, len(text)))
    return [(a, b) for a, b in spans if text[a:b].strip()]


@dataclass(frozen=True)
class SquadQnliReader:
    """QNLI-style (question, sentence) pairs from SQuAD v1.1, built the way GLUE built QNLI: the sentence of the
    paragraph that holds the answer is ``entailment``; the other sentence with the most words in common with the
    question is ``not_entailment`` (GLUE kept only high-overlap pairs, so that overlap alone does not decide).
    One positive and at most one negative per question; questions whose answer spans two sentences are skipped.

    Paths: the SQuAD file, then optionally a GLUE QNLI TSV whose questions are excluded (so that pairs of the
    official QNLI dev set, which GLUE drew from SQuAD train, never reach training).
    """

    def __call__(self, paths: Sequence[Path]) -> RawColumns:
        if len(paths) not in (1, 2):
            raise ValueError(f"SquadQnliReader reads a SQuAD file and optionally a QNLI TSV; got {len(paths)} paths")
        excluded = set()
        if len(paths) == 2:
            excluded = {q.strip().lower() for q in TsvReader(text_a="question", label="label")(paths[1:]).text_a}
        columns = RawColumns([], [], [])
        for record in SquadReader()(paths[:1]):
            question = record["question"]
            if question.strip().lower() in excluded:
                continue
            context, start = record["context"], record["answers"]["answer_start"][0]
            end = start + len(record["answers"]["text"][0])
            spans = split_sentences(context)
            holding = [i for i, (a, b) in enumerate(spans) if a <= start and end <= b]
            if len(holding) != 1:
                continue
            words = set(_WORD.findall(question.lower()))
            others = [(len(words & set(_WORD.findall(context[a:b].lower()))), i) for i, (a, b) in enumerate(spans)]
            others = [(overlap, i) for overlap, i in others if i != holding[0]]
            pairs = [(holding[0], "entailment")]
            if others:
                pairs.append((max(others)[1], "not_entailment"))
            for index, label in pairs:
                a, b = spans[index]
                columns.text_a.append(question.strip())
                columns.text_b.append(context[a:b].strip())
                columns.labels.append(label)
        return columns


# --- sentiment ---------------------------------------------------------------------------------------------------

_IMDB_READER = JsonLinesReader(text_a="text", label="label")
_IMDB_TRAIN = LocalFile(("imdb/train.jsonl.gz",), _IMDB_READER)
register_task(TaskSpec(
    name="imdb", task_type="classification", label_names=SENTIMENT_LABELS, is_pair=False,
    metrics=("accuracy",), main_metric="accuracy", aliases=("aclimdb",),
    description=f"IMDb: binary sentiment of full movie reviews (Maas et al. 2011); the files label 0 = negative "
                f"(rating <= 4), 1 = positive (>= 7). Local: imdb/train.jsonl.gz "
                f"(25,000) less {IMDB_VALIDATION_ROWS:,} reviews carved off with CARVE_SEED as the validation split "
                f"(train 23,000); imdb/test.jsonl.gz (25,000) is the test split. Reviews are long (median ~230 "
                f"words): raise max_seq_length where time allows. Hub: stanfordnlp/imdb (validation = "
                f"{IMDB_VALIDATION_ROWS:,} rows of train, carved).",
    local=LocalSource({
        "train": Carve(_IMDB_TRAIN, "train", (("validation", IMDB_VALIDATION_ROWS),)),
        "validation": Carve(_IMDB_TRAIN, "validation", (("validation", IMDB_VALIDATION_ROWS),)),
        "test": LocalFile(("imdb/test.jsonl.gz",), _IMDB_READER),
    }),
    hub=HubSource("stanfordnlp/imdb", None, "text", splits={
        "train": Carve("train", "train", (("validation", IMDB_VALIDATION_ROWS),)),
        "validation": Carve("train", "validation", (("validation", IMDB_VALIDATION_ROWS),)),
        "test": "test",
    }),
))

# --- NLI ---------------------------------------------------------------------------------------------------------

_NLI_EXTRA_TRAIN = ("nli_extra/mnli/dev.csv", "nli_extra/sick/train.csv", "nli_extra/mpe/train.csv",
                    "nli_extra/joci/train.csv")
register_task(TaskSpec(
    name="mnli_plus", task_type="classification", label_names=NLI_LABELS, is_pair=True,
    metrics=("accuracy", "macro_f1"), main_metric="accuracy", aliases=("nli_plus", "mnli_extra"),
    description="MNLI+: 3-way entailment trained on more pairs, evaluated on MNLI. Local train (55,558 pairs): the "
                "LM-BFF MNLI train subset (8,999) + nli_extra MNLI dev matched and mismatched (19,647; disjoint from "
                "the LM-BFF subsets, which come from MNLI train) + SICK train (9,500) + MPE train (9,000) + JOCI "
                "train (8,412). Validation: the LM-BFF MNLI dev subset (1,000). SNLI, SciTail and Add-One RTE are "
                "left out (SNLI and RTE are transfer targets; the other two are binary). Hub: nyu-mll/glue 'mnli' "
                "(validation = validation_matched).",
    local=LocalSource({
        "train": LocalFile((f"{LMBFF}/MNLI/train.json", *_NLI_EXTRA_TRAIN),
                           ConcatReader(((1, JsonReader()), (len(_NLI_EXTRA_TRAIN), CsvPairsReader())))),
        "validation": LocalFile((f"{LMBFF}/MNLI/dev.json",), JsonReader()),
    }),
    hub=HubSource(GLUE_HUB, "mnli", "premise", "hypothesis",
                  splits={"train": "train", "validation": "validation_matched"}),
))

register_task(TaskSpec(
    name="qnli_squad", task_type="classification", label_names=BINARY_NLI_LABELS, is_pair=True,
    metrics=("accuracy",), main_metric="accuracy", aliases=("qnli_plus",),
    description="QNLI from SQuAD: (question, sentence) pairs derived from SQuAD v1.1 train the way GLUE built QNLI "
                "(tasks.transfer_sets.SquadQnliReader: the answer's sentence is entailment, the other sentence with "
                "the most question words not_entailment), minus every question of the official QNLI dev set. "
                "Validation: the official GLUE QNLI dev set (glue/QNLI/dev.tsv, 5,463). Hub: nyu-mll/glue 'qnli'.",
    local=LocalSource({
        "train": LocalFile(("squad_v1/train-v1.1.json.gz", "glue/QNLI/dev.tsv"), SquadQnliReader()),
        "validation": LocalFile(("glue/QNLI/dev.tsv",), TsvReader(text_a="question", text_b="sentence",
                                                                  label="label")),
    }),
    hub=HubSource(GLUE_HUB, "qnli", "question", "sentence", splits={"train": "train", "validation": "validation"}),
))

# --- question answering ------------------------------------------------------------------------------------------

_BOOLQ_LABELS = {"false": "no", "true": "yes"}
register_task(TaskSpec(
    name="boolq", task_type="classification", label_names=("no", "yes"), is_pair=True,
    metrics=("accuracy",), main_metric="accuracy", aliases=("bool_q",),
    description="BoolQ: yes/no questions over Wikipedia passages (question, passage). Local: boolq train (9,427) "
                "and dev (3,270) as validation; passages are long (~110 words): raise max_seq_length where time "
                "allows. Hub: google/boolq.",
    local=LocalSource({
        "train": LocalFile(("boolq/train.jsonl.gz",), JsonLinesReader("question", "label", "passage"),
                           label_map=_BOOLQ_LABELS),
        "validation": LocalFile(("boolq/dev.jsonl.gz",), JsonLinesReader("question", "answer", "passage"),
                                label_map=_BOOLQ_LABELS),
    }),
    hub=HubSource("google/boolq", None, "question", "passage", label="answer",
                  splits={"train": "train", "validation": "validation"}, label_map=_BOOLQ_LABELS),
))

_WIKIQA_READER = TsvReader(text_a=0, text_b=1, label=2, header=False)
register_task(TaskSpec(
    name="wikiqa", task_type="classification", label_names=("no", "yes"), is_pair=True,
    metrics=("accuracy", "f1"), main_metric="f1", aliases=("wiki_qa",),
    description="WikiQA answer-sentence selection: does the Wikipedia sentence answer the question? (about 5% yes). "
                "Local: wikiqa train (20,360), dev (2,733) as validation, test (6,165). Hub: microsoft/wiki_qa "
                "(question, answer, label).",
    local=LocalSource({split: LocalFile((f"wikiqa/{name}.txt",), _WIKIQA_READER)
                       for split, name in (("train", "train"), ("validation", "dev"), ("test", "test"))}),
    hub=HubSource("microsoft/wiki_qa", None, "question", "answer"),
))

register_task(TaskSpec(
    name="squad", task_type="extractive_qa", label_names=(), is_pair=False,
    metrics=("exact_match", "f1"), main_metric="f1", aliases=("squad_v1", "squad1.1"),
    description="SQuAD v1.1: extractive QA on Wikipedia paragraphs. Local: squad_v1 train (87,599 questions) and dev "
                "(10,570) as validation. The local train file's answer_start is each answer's first occurrence in "
                "the context (answers whose offset does not match are dropped). XQuAD-en is a subset of this dev set: "
                "never train on it when evaluating on XQuAD. Hub: rajpurkar/squad.",
    local=LocalSource({
        "train": LocalFile(("squad_v1/train-v1.1.json.gz",), SquadReader()),
        "validation": LocalFile(("squad_v1/dev-v1.1.json.gz",), SquadReader()),
    }),
    hub=QAHubSource("rajpurkar/squad", None, splits={"train": "train", "validation": "validation"}),
))
