"""SQuAD v1.1 ``exact_match`` and token ``f1`` for extractive QA, as fractions in [0, 1] (the official script
reports them in percent: multiply by 100 to compare)."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

from adapter_fusion.tasks.scoring import check_lengths, check_references

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """The official SQuAD v1.1 normalisation: lower-case, remove punctuation, remove the articles a/an/the, and
    collapse whitespace."""
    text = "".join(char for char in text.lower() if char not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _f1(prediction: str, reference: str) -> float:
    predicted, gold = normalize_answer(prediction).split(), normalize_answer(reference).split()
    common = sum((Counter(predicted) & Counter(gold)).values())
    if common == 0:  # as SQuAD v1.1: also 0 when both are empty
        return 0.0
    precision, recall = common / len(predicted), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """SQuAD v1.1 ``exact_match`` and token ``f1`` as fractions in [0, 1] (the official script's percent / 100):
    each prediction is scored against each of its reference answers after ``normalize_answer``, the best one counts,
    and the scores are averaged over questions.

    Args:
        predictions: one answer string per question.
        references: the gold answer texts of each question (at least one each).
    """
    check_lengths("predictions", predictions, "references", references)
    check_references(references)
    exact = f1 = 0.0
    for prediction, refs in zip(predictions, references):
        exact += max(float(normalize_answer(prediction) == normalize_answer(ref)) for ref in refs)
        f1 += max(_f1(prediction, ref) for ref in refs)
    return {"exact_match": exact / len(predictions), "f1": f1 / len(predictions)}
