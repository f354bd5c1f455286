"""Metrics of generation, on decoded texts against each example's references: ROUGE-1/2/L F-measures (fractions in
[0, 1]) for summarization, corpus BLEU and chrF (sacrebleu's 0-100 scale, as every MT paper reports them) for
translation. rouge_score and sacrebleu are imported on first use to keep ``import adapter_fusion`` fast.
"""

from __future__ import annotations

from collections.abc import Sequence

from adapter_fusion.tasks.base import TaskSpec
from adapter_fusion.tasks.scoring import check_lengths, check_references


def rouge_scores(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """ROUGE-1, ROUGE-2 and ROUGE-L F-measures in [0, 1] from Google's ``rouge_score`` (its default tokenizer:
    lower-cased ASCII alphanumerics, Porter stemming on), taking per example the reference with the best F-measure
    (separately for each ROUGE type, as ``RougeScorer.score_multi``), averaged over examples. ``rougeL`` is the
    sentence-level LCS (not ``rougeLsum``)."""
    from rouge_score.rouge_scorer import RougeScorer

    check_lengths("predictions", predictions, "references", references)
    check_references(references)
    types = ("rouge1", "rouge2", "rougeL")
    scorer = RougeScorer(list(types), use_stemmer=True)
    totals = dict.fromkeys(types, 0.0)
    for prediction, refs in zip(predictions, references):
        best = scorer.score_multi(list(refs), prediction)
        for name in types:
            totals[name] += best[name].fmeasure
    return {name: total / len(predictions) for name, total in totals.items()}


def bleu_scores(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Corpus ``bleu`` and ``chrf`` from ``sacrebleu`` with its defaults (13a tokenisation, chrF with character
    6-grams and beta 2), on sacrebleu's 0-100 scale. Examples may have different numbers of references: the
    reference streams are padded with None, which sacrebleu skips."""
    import sacrebleu

    check_lengths("predictions", predictions, "references", references)
    check_references(references)
    width = max(len(refs) for refs in references)
    streams = [[refs[k] if k < len(refs) else None for refs in references] for k in range(width)]
    hypotheses = list(predictions)
    return {
        "bleu": float(sacrebleu.corpus_bleu(hypotheses, streams).score),
        "chrf": float(sacrebleu.corpus_chrf(hypotheses, streams).score),
    }


def score_generations(spec: TaskSpec, predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    """``spec.metrics`` of generated texts: ROUGE-1/2/L F-measure and corpus BLEU / chrF (sacrebleu)."""
    wanted = set(spec.metrics)
    scores: dict[str, float] = {}
    if wanted & {"rouge1", "rouge2", "rougeL"}:
        scores.update(rouge_scores(predictions, references))
    if wanted & {"bleu", "chrf"}:
        scores.update(bleu_scores(predictions, references))
    return {name: float(scores[name]) for name in spec.metrics}
