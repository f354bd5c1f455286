"""Input checks shared by the family metrics (``<family>/metrics.py``): every metric function refuses empty or
mismatched inputs with a ``ValueError`` naming the lengths it got."""

from __future__ import annotations

from collections.abc import Sequence


def check_lengths(first: str, firsts: Sequence, second: str, seconds: Sequence) -> None:
    """``firsts`` and ``seconds`` must be non-empty and of the same length."""
    if len(firsts) != len(seconds) or len(firsts) == 0:
        raise ValueError(
            f"{first} and {second} must be non-empty and of the same length; got {len(firsts)} {first} "
            f"and {len(seconds)} {second}"
        )


def check_references(references: Sequence[Sequence[str]]) -> None:
    """Each example's references must be a non-empty list of strings."""
    for index, refs in enumerate(references):
        if isinstance(refs, str) or len(refs) == 0 or not all(isinstance(ref, str) for ref in refs):
            raise ValueError(f"references[{index}] must be a non-empty list of strings; got {refs!r}")
