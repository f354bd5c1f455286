"""Readers of the token-classification files of the data directory: CoNLL-2003, ``token<TAB>tag`` (WNUT-17,
WikiANN) and CoNLL-U. Each returns one record ``{"tokens": list[str], "tags": list[str]}`` per sentence, tags raw
as in the file; a sentence without tokens is never produced. Errors follow ``tasks/files.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapter_fusion.tasks.files import Record, check_paths, numbered_lines

CONLLU_COLUMNS = ("id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc")


_SKIP = ("", "")
"""What a line parser returns for a line that holds no word but does not end the sentence either."""


def _sentences(path: Path, parse: Any) -> list[Record]:
    """Group the word lines of ``path`` into sentences at blank lines (or lines holding only whitespace and BOMs).
    ``parse(number, line)`` returns ``(token, tag)``; ``_SKIP`` for a line to ignore; None for a line to ignore that
    also ends the sentence."""
    records: list[Record] = []
    tokens: list[str] = []
    tags: list[str] = []
    for number, line in numbered_lines(path):
        item = parse(number, line) if line.replace("\ufeff", "").strip() else None
        if item is _SKIP:
            continue
        if item is None:
            if tokens:
                records.append({"tokens": tokens, "tags": tags})
            tokens, tags = [], []
            continue
        tokens.append(item[0])
        tags.append(item[1])
    if tokens:
        records.append({"tokens": tokens, "tags": tags})
    return records


@dataclass(frozen=True)
class ConllReader:
    """CoNLL-2003 (``conll2003/{train,valid}.txt``): one ``token POS chunk NER`` line per token, separated by single
    spaces, exactly 4 fields; a blank line ends a sentence; ``-DOCSTART-`` lines are skipped."""

    tag_column: int
    """0-based column of the tag: 1 = Penn Treebank POS, 2 = chunk (IOB), 3 = NER (IOB1: PER, ORG, LOC, MISC)."""

    def __post_init__(self) -> None:
        if self.tag_column not in (1, 2, 3):
            raise ValueError(f"tag_column must be 1 (POS), 2 (chunk) or 3 (NER); got {self.tag_column!r}")

    def __call__(self, paths: Sequence[Path]) -> list[Record]:
        (path,) = check_paths(paths, "ConllReader")

        def parse(number: int, line: str) -> tuple[str, str] | None:
            fields = line.split()
            if fields[0] == "-DOCSTART-":
                return None
            if len(fields) != 4:
                raise ValueError(f"{path}:{number}: expected 4 space-separated fields (token POS chunk NER): {line!r}")
            return fields[0], fields[self.tag_column]

        return _sentences(path, parse)


@dataclass(frozen=True)
class TabTagReader:
    """``token<TAB>tag`` lines, a blank line between sentences: WNUT-17 (``wnut17/wnut17train.conll``,
    ``emerging.dev.conll``, ``emerging.test.annotated``) and WikiANN (``wikiann_en/{train,dev,test}``).

    A line that is empty, whitespace only (WNUT-17 train separates most sentences with a lone tab) or a lone BOM
    (the last line of the WNUT-17 dev file) ends a sentence. BOMs (U+FEFF) are removed wherever they are: besides
    its last line, the WNUT-17 dev file has one glued to the end of a token (``Dubbz``)
    """

    strip_prefix: str | None = None
    """Prefix every token must carry and that is removed (``"en:"`` for WikiANN); None: tokens are kept as is."""

    def __call__(self, paths: Sequence[Path]) -> list[Record]:
        (path,) = check_paths(paths, "TabTagReader")
        prefix = self.strip_prefix

        def parse(number: int, line: str) -> tuple[str, str]:
            fields = line.replace("\ufeff", "").split("\t")
            if len(fields) != 2 or not fields[0].strip() or not fields[1].strip():
                raise ValueError(f"{path}:{number}: expected 'token<TAB>tag' with both non-empty, got {line!r}")
            token, tag = fields[0].strip(), fields[1].strip()
            if prefix is not None:
                if not token.startswith(prefix) or len(token) == len(prefix):
                    raise ValueError(f"{path}:{number}: expected a token starting with {prefix!r}, got {token!r}")
                token = token[len(prefix) :]
            return token, tag

        return _sentences(path, parse)


@dataclass(frozen=True)
class ConlluReader:
    """CoNLL-U (``ud_english_lines/en_lines-ud-*.conllu``, ``ud_english_ewt/en_ewt-ud-*.conllu``): 10 tab-separated
    fields per word, ``#`` comment lines, a blank line after each sentence. Multiword-token ranges (``1-2``) and empty
    nodes (``8.1``) are skipped, so the tokens are the syntactic words (FORM column)."""

    column: str = "upos"
    """Column giving the tag, by its CoNLL-U name (``upos`` = universal POS, 17 tags; ``xpos``, ``deprel``, ...)."""

    def __post_init__(self) -> None:
        if self.column not in CONLLU_COLUMNS[2:]:
            raise ValueError(f"column must be one of {CONLLU_COLUMNS[2:]}; got {self.column!r}")

    def __call__(self, paths: Sequence[Path]) -> list[Record]:
        (path,) = check_paths(paths, "ConlluReader")
        index = CONLLU_COLUMNS.index(self.column)

        def parse(number: int, line: str) -> tuple[str, str]:
            if line.startswith("#"):
                return _SKIP
            fields = line.split("\t")
            if len(fields) != 10:
                raise ValueError(f"{path}:{number}: expected 10 tab-separated CoNLL-U fields, got {len(fields)}")
            if "-" in fields[0] or "." in fields[0]:
                return _SKIP
            if not fields[0].isdigit() or not fields[1] or not fields[index]:
                raise ValueError(f"{path}:{number}: expected an integer ID, a FORM and a {self.column}: {line!r}")
            return fields[1], fields[index]

        return _sentences(path, parse)
