"""The metric of multiple choice: accuracy of the predicted option indices."""

from __future__ import annotations

import operator
from collections.abc import Sequence

from adapter_fusion.tasks.scoring import check_lengths


def choice_accuracy(predictions: Sequence[int], labels: Sequence[int]) -> float:
    """Fraction of questions whose predicted option index equals the gold label."""
    check_lengths("predictions", predictions, "labels", labels)
    try:
        pairs = [(operator.index(p), operator.index(label)) for p, label in zip(predictions, labels)]
    except TypeError:
        raise ValueError(
            f"predictions and labels must be integer option indices; "
            f"got {list(predictions)[:5]} and {list(labels)[:5]}"
        ) from None
    return sum(p == label for p, label in pairs) / len(pairs)
