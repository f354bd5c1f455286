"""Metrics of token classification, on word-level tag sequences: entity-level ``precision`` / ``recall`` / ``f1``
(seqeval's default mode, i.e. CoNLL ``conlleval``) for IOB tag sets and token ``accuracy`` (POS tagging); fractions
in [0, 1]. seqeval is imported on first use to keep ``import adapter_fusion`` fast.
"""

from __future__ import annotations

from collections.abc import Sequence

from adapter_fusion.tasks.scoring import check_lengths

ENTITY_METRICS = ("precision", "recall", "f1")
TAGGING_METRICS = (*ENTITY_METRICS, "accuracy")


def _check_tags(true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str | None]]) -> None:
    check_lengths("true_tags", true_tags, "pred_tags", pred_tags)
    for index, (true, pred) in enumerate(zip(true_tags, pred_tags)):
        if isinstance(true, str) or isinstance(pred, str):
            raise ValueError(f"sentence {index}: tags must be lists of tag strings, not a string")
        if len(true) != len(pred):
            raise ValueError(f"sentence {index}: {len(true)} true tags but {len(pred)} predicted tags")


def entity_scores(true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]]) -> dict[str, float]:
    """Micro-averaged entity-level ``precision``, ``recall`` and ``f1``, exactly as ``seqeval``'s default mode
    (CoNLL ``conlleval`` semantics): an entity counts only when its type and both boundaries match; IOB1, IOB2 and a
    stray ``I-`` starting an entity are all accepted. Scores are 0.0 where undefined (no predicted / no true entities).

    Args:
        true_tags: gold tags per sentence, e.g. ``[["B-PER", "I-PER", "O"], ...]``.
        pred_tags: predicted tags, the same number per sentence.
    """
    from seqeval.metrics.sequence_labeling import precision_recall_fscore_support

    _check_tags(true_tags, pred_tags)
    true, pred = [list(tags) for tags in true_tags], [list(tags) for tags in pred_tags]
    precision, recall, f1, _ = precision_recall_fscore_support(true, pred, average="micro", zero_division=0)
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1)}


def token_accuracy(true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str | None]]) -> float:
    """Fraction of tokens, over all sentences, whose predicted tag equals the gold tag (POS tagging's metric); a
    predicted None (no prediction) never equals a gold tag, so it counts as an error."""
    _check_tags(true_tags, pred_tags)
    total = sum(len(tags) for tags in true_tags)
    if total == 0:
        raise ValueError(f"token_accuracy needs at least one token; got {len(true_tags)} empty sentences")
    correct = sum(t == p for true, pred in zip(true_tags, pred_tags) for t, p in zip(true, pred))
    return correct / total


def tag_scores(
    metrics: Sequence[str], true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str | None]]
) -> dict[str, float]:
    """``metrics`` (of ``TAGGING_METRICS``) for word-level tags; a predicted None (no prediction) counts as
    ``"O"`` for the entity metrics and as an error for ``accuracy``."""
    scores: dict[str, float] = {}
    if any(metric in ENTITY_METRICS for metric in metrics):
        scores.update(entity_scores(true_tags, [[tag or "O" for tag in tags] for tags in pred_tags]))
    if "accuracy" in metrics:
        scores["accuracy"] = token_accuracy(true_tags, pred_tags)
    return {metric: scores[metric] for metric in metrics}
