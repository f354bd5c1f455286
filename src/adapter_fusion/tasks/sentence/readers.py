"""Readers of the sentence(-pair) files of the task data directory (``../shared/data/README.md``): GLUE TSV,
LM-BFF/PCP JSON, aligned lines, JSON lines, CSV pairs, and QNLI-style pairs built from SQuAD.

A reader is a small frozen dataclass, called with the file paths of one split, that returns the raw columns
``(text_a, text_b, labels)``. Readers keep labels raw (strings or ints as in the file); mapping them to class ids
is the loader's job. Nothing is cached: every call re-reads the files.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from adapter_fusion.tasks.files import open_text
from adapter_fusion.tasks.qa.readers import SquadReader

MAX_FIELD_CHARS = 1 << 20
"""Longest TSV field read (csv's own default is 128 Ki characters). Texts are truncated to the model's
``max_seq_length`` tokens anyway; a longer field is almost surely a missing line break."""


@contextmanager
def _field_size_limit(limit: int) -> Iterator[None]:
    previous = csv.field_size_limit(limit)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


class RawColumns(NamedTuple):
    """One split as read from disk: texts (``text_b`` is ``""`` for single sentences) and raw labels."""

    text_a: list[str]
    text_b: list[str]
    labels: list[object]


def _single(paths: Sequence[Path], reader: str) -> Path:
    if len(paths) != 1:
        raise ValueError(f"{reader} reads exactly one file; got {len(paths)}: {[str(p) for p in paths]}")
    return paths[0]


@dataclass(frozen=True)
class TsvReader:
    """Tab-separated values as in GLUE: no quoting (texts contain quotes), optional header, optional BOM.

    Columns are header names when ``header`` is true, else 0-based indices.
    """

    text_a: str | int
    """Column of the first sentence."""
    label: str | int
    """Column of the label."""
    text_b: str | int | None = None
    """Column of the second sentence, or None for single-sentence tasks."""
    header: bool = True
    """Whether the first row names the columns."""

    def __call__(self, paths: Sequence[Path]) -> RawColumns:
        """Read the file; a row whose number of fields differs from the header's (a tab inside a text), an empty
        text, or a field over ``MAX_FIELD_CHARS`` raises ``ValueError`` naming the file and line."""
        path = _single(paths, "TsvReader")
        with _field_size_limit(MAX_FIELD_CHARS), path.open(encoding="utf-8-sig", newline="") as handle:
            rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
            try:
                return self._read(rows, path)
            except csv.Error as error:
                raise ValueError(
                    f"{path}:{rows.line_num}: {error} (the reader allows fields of up to {MAX_FIELD_CHARS:,} "
                    "characters; is a line break missing?)"
                ) from None
            except UnicodeDecodeError as error:
                raise ValueError(f"{path}: not UTF-8 text ({error.reason}); save it as UTF-8") from None

    def _read(self, rows: Any, path: Path) -> RawColumns:
        text_a: list[str] = []
        text_b: list[str] = []
        labels: list[object] = []
        names = next(rows, None) if self.header else None
        if self.header and names is None:
            raise ValueError(f"{path}: empty file, expected a header row")
        col_a, col_label = self._index(self.text_a, names, path), self._index(self.label, names, path)
        col_b = None if self.text_b is None else self._index(self.text_b, names, path)
        needed = max(col for col in (col_a, col_b, col_label) if col is not None) + 1
        width = len(names) if names is not None else None
        for row in rows:
            if not row:
                continue
            width = len(row) if width is None else width  # without a header, the first row sets the width
            if len(row) != width or len(row) < needed:
                origin = "the header's" if names is not None else "the first row's"
                raise ValueError(
                    f"{path}:{rows.line_num}: expected {max(width, needed)} tab-separated fields ({origin}), got "
                    f"{len(row)}; a tab inside a text, or a missing field?"
                )
            for column, what in ((col_a, "first text"), (col_b, "second text")):
                if column is not None and not row[column].strip():
                    raise ValueError(f"{path}:{rows.line_num}: the {what} (column {column}) is empty")
            text_a.append(row[col_a].strip())
            text_b.append("" if col_b is None else row[col_b].strip())
            labels.append(row[col_label].strip())
        return RawColumns(text_a, text_b, labels)

    def _index(self, column: str | int, names: list[str] | None, path: Path) -> int:
        if isinstance(column, int):
            return column
        if names is None or column not in names:
            raise ValueError(f"{path}: no column {column!r}; header columns: {names}")
        return names.index(column)


@dataclass(frozen=True)
class JsonReader:
    """LM-BFF / PCP JSON: an object ``{"0": {record}, "1": {record}, ...}`` (or a list of records).

    A missing, null or ``"None"`` second text becomes ``""``.
    """

    text_a: str = "text_a"
    """Field of the first text (``"ori"`` in the PCP ``{ori, label}`` files)."""
    text_b: str | None = "text_b"
    """Field of the second text, or None for single-text files."""
    label: str = "label"
    """Field of the label."""

    def __call__(self, paths: Sequence[Path]) -> RawColumns:
        path = _single(paths, "JsonReader")
        try:
            with path.open(encoding="utf-8") as handle:
                data = json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from None
        except UnicodeDecodeError as error:
            raise ValueError(f"{path}: not UTF-8 text ({error.reason})") from None
        if isinstance(data, dict):
            records = list(data.items())
        elif isinstance(data, list):
            records = list(enumerate(data))
        else:
            raise ValueError(f"{path}: expected a JSON object or list of records, got {type(data).__name__}")
        text_a: list[str] = []
        text_b: list[str] = []
        labels: list[object] = []
        for key, record in records:
            if not isinstance(record, dict) or self.text_a not in record or self.label not in record:
                raise ValueError(f"{path}: record {key!r} needs fields {self.text_a!r} and {self.label!r}: {record!r}")
            second = record.get(self.text_b) if self.text_b is not None else None
            text_a.append(str(record[self.text_a]).strip())
            text_b.append("" if second is None or second == "None" else str(second).strip())
            labels.append(record[self.label])
        return RawColumns(text_a, text_b, labels)


@dataclass(frozen=True)
class AlignedLinesReader:
    """Three parallel plain-text files, one example per line: first sentences, second sentences, labels
    (the e-SNLI layout ``s1.dev``, ``s2.dev``, ``labels.dev``)."""

    def __call__(self, paths: Sequence[Path]) -> RawColumns:
        if len(paths) != 3:
            raise ValueError(f"AlignedLinesReader reads 3 files (s1, s2, labels); got {[str(p) for p in paths]}")
        columns = []
        for path in paths:
            with path.open(encoding="utf-8") as handle:
                columns.append([line.strip() for line in handle])
        lengths = {str(path): len(column) for path, column in zip(paths, columns)}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"aligned files have different numbers of lines: {lengths}")
        return RawColumns(columns[0], columns[1], list(columns[2]))


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
        path = _single(paths, "JsonLinesReader")
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
