"""Readers of SQuAD v1.1 JSON (``xquad_en/xquad.en.json``, ``covid_qa/200423_covidQA.json``, ``squad_v1/``) and the
split of QA records by article.

Records: ``{"id", "title", "context", "question", "answers": {"text": [...], "answer_start": [...]}}``. Contexts and
answers are kept verbatim (answers index into the context); answers whose span cannot be found in the context are
dropped and counted (see ``read_squad``), the one place where a reader drops rather than refuses. Errors follow
``tasks/files.py``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adapter_fusion.tasks.files import Record, check_paths, non_empty, open_text

logger = logging.getLogger(__name__)


def read_squad(path: Path, realign: bool = False) -> tuple[list[Record], dict[str, int]]:
    """Read SQuAD v1.1 JSON (``xquad_en/xquad.en.json``, ``covid_qa/200423_covidQA.json``): one record per question.

    ``title`` is the article's title or, where there is none (COVID-QA), the paragraph's ``document_id``; ``id`` is
    the question id as a string (ids must be unique). Contexts are kept verbatim.

    Answers are checked against the context: ``context[start:start + len(text)] == text``.
    Without ``realign`` an answer failing the check is dropped. With ``realign`` (for COVID-QA, whose offsets are
    often off by one to three characters) the answer text is first trimmed of surrounding whitespace (offsets move
    with it), then an answer failing the check is moved to the occurrence of its text in the context nearest to the
    given offset (the earlier one on a tie), and dropped only when the text does not occur at all. Empty answers are
    dropped; a question left without answers is dropped.

    Returns:
        The records, and counts ``{"questions": read, "answers": read, "mismatched": answers whose offset did not
        match their text as given, "trimmed": answers trimmed of whitespace, "realigned": answers moved to another
        offset, "dropped_answers": ..., "dropped_questions": ...}``.
    """
    (path,) = check_paths([path], "read_squad")
    with open_text(path) as handle:
        try:
            data = json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error}); expected SQuAD v1.1 JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ValueError(f"{path}: expected a JSON object with a 'data' list of articles (SQuAD v1.1)")
    names = ("questions", "answers", "mismatched", "trimmed", "realigned", "dropped_answers", "dropped_questions")
    counts = dict.fromkeys(names, 0)
    records: list[Record] = []
    seen: set[str] = set()
    for a, article in enumerate(data["data"]):
        for p, paragraph in enumerate(article.get("paragraphs", ())):
            where = f"{path}: data[{a}].paragraphs[{p}]"
            context = paragraph.get("context")
            if not isinstance(context, str) or not context.strip():
                raise ValueError(f"{where}: expected a non-empty 'context' string")
            title = str(article.get("title", paragraph.get("document_id", "")))
            for q, qa in enumerate(paragraph.get("qas", ())):
                where_q = f"{where}.qas[{q}]"
                if not isinstance(qa, dict) or "id" not in qa or not isinstance(qa.get("answers"), list):
                    raise ValueError(f"{where_q}: expected an object with 'id', 'question' and an 'answers' list")
                qid = str(qa["id"])
                if qid in seen:
                    raise ValueError(f"{where_q}: duplicate question id {qid!r}")
                seen.add(qid)
                question = non_empty(qa.get("question"), where_q, "'question'")
                counts["questions"] += 1
                texts, starts = [], []
                for answer in qa["answers"]:
                    counts["answers"] += 1
                    span = _answer_span(context, answer, realign, counts, f"{where_q} (id {qid})")
                    if span is None:
                        counts["dropped_answers"] += 1
                    else:
                        texts.append(span[0])
                        starts.append(span[1])
                if not texts:
                    counts["dropped_questions"] += 1
                    continue
                answers = {"text": texts, "answer_start": starts}
                records.append(
                    {"id": qid, "title": title, "context": context, "question": question, "answers": answers}
                )
    if counts["questions"] == 0:
        raise ValueError(f"{path}: no questions found")
    return records, counts


def _answer_span(
    context: str, answer: object, realign: bool, counts: dict[str, int], where: str
) -> tuple[str, int] | None:
    """``(text, start)`` of a checked (and with ``realign`` repaired) answer, or None to drop it."""
    if (
        not isinstance(answer, dict)
        or not isinstance(answer.get("text"), str)
        or type(answer.get("answer_start")) is not int
    ):
        raise ValueError(f"{where}: expected answers as {{'text': str, 'answer_start': int}}, got {answer!r}")
    text, start = answer["text"], answer["answer_start"]
    matches = start >= 0 and context.startswith(text, start)
    if not matches:
        counts["mismatched"] += 1
    if realign:
        trimmed = text.strip()
        if trimmed != text:
            counts["trimmed"] += 1
            if matches:
                start += len(text) - len(text.lstrip())
            text = trimmed
        if text and not matches and not (start >= 0 and context.startswith(text, start)):
            found = _nearest(context, text, start)
            if found is None:
                return None
            counts["realigned"] += 1
            start = found
    elif not matches:
        return None
    return (text, start) if text.strip() else None


def _nearest(context: str, text: str, start: int) -> int | None:
    """The offset of the occurrence of ``text`` in ``context`` nearest to ``start`` (the earlier one on a tie)."""
    best = None
    found = context.find(text)
    while found != -1:
        if best is None or abs(found - start) < abs(best - start):
            best = found
        found = context.find(text, found + 1)
    return best


@dataclass(frozen=True)
class SquadReader:
    """SQuAD v1.1 JSON, one record per question; see ``read_squad`` (the counts it returns are logged)."""

    realign: bool = False
    """Trim answers and move answers whose offsets do not match the context to the nearest occurrence (COVID-QA)."""

    def __call__(self, paths: Sequence[Path]) -> list[Record]:
        (path,) = check_paths(paths, "SquadReader")
        records, counts = read_squad(path, realign=self.realign)
        dropped = counts["dropped_answers"] or counts["dropped_questions"]
        (logger.warning if dropped else logger.info)("%s: %s", path, counts)
        return records


def split_by_article(
    records: Sequence[Record], dev_fraction: float, seed: int = 42
) -> tuple[list[Record], list[Record]]:
    """Split QA records into ``(train, dev)`` by article (``title``), so that no article is in both.

    ``round(dev_fraction * number_of_articles)`` articles (at least 1, at most all but 1), drawn by a fixed
    permutation of the sorted titles under ``seed``, go to dev. Both parts keep the records' order.
    """
    if not 0.0 < dev_fraction < 1.0:
        raise ValueError(f"dev_fraction must be in (0, 1); got {dev_fraction!r}")
    titles = sorted({record["title"] for record in records})
    if len(titles) < 2:
        raise ValueError(f"need at least 2 articles to split by article; got {len(titles)}: {titles}")
    count = min(max(round(dev_fraction * len(titles)), 1), len(titles) - 1)
    order = np.random.default_rng(seed).permutation(len(titles))
    dev_titles = {titles[i] for i in order[:count]}
    train = [record for record in records if record["title"] not in dev_titles]
    dev = [record for record in records if record["title"] in dev_titles]
    return train, dev
