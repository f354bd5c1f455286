"""Word features of the tagging family: each word's casing, as ids the token-classification head can embed
(``HeadConfig.casing_dim``). Uncased tokenizers lower the text before the model sees it, and the case is much of
what tells a proper noun from a common noun, or an entity from a word.
"""

from __future__ import annotations

from collections.abc import Sequence

from adapter_fusion.heads.tagging import NUM_CASINGS

WORD_SHAPES = ("lower", "title", "upper", "mixed", "digit", "other")
"""A word's casing class: all lower case; a capital then lower case ('Paris', 'I'); all capitals, two letters or
more ('IBM'); any other mix of cases ('McDonald', 'iPhone'); any digit ('1996', '3-2'); no letter or digit."""
SENTENCE_POSITIONS = ("inside", "first", "capitals")
"""Where the word stands: inside a sentence; its first word (a capital there says little); anywhere in a sentence
with no lower-case letter (a headline in capitals, where casing says nothing)."""
assert 1 + len(WORD_SHAPES) * len(SENTENCE_POSITIONS) == NUM_CASINGS, "casing ids must fill the head's embedding"


def word_shape(word: str) -> str:
    """The casing class of ``word`` (one of ``WORD_SHAPES``).

    >>> [word_shape(w) for w in ("the", "Paris", "IBM", "McDonald", "1996", ",")]
    ['lower', 'title', 'upper', 'mixed', 'digit', 'other']
    """
    if any(ch.isdigit() for ch in word):
        return "digit"
    letters = [ch for ch in word if ch.isalpha()]
    if not letters:
        return "other"
    if all(ch.islower() for ch in letters):
        return "lower"
    if letters[0].isupper() and all(ch.islower() for ch in letters[1:]):
        return "title"
    if len(letters) > 1 and all(ch.isupper() for ch in letters):
        return "upper"
    return "mixed"


def word_casings(words: Sequence[str]) -> list[int]:
    """One casing id (1 .. ``NUM_CASINGS - 1``) per word of a sentence."""
    capitals = not any(ch.islower() for word in words for ch in word)
    ids = []
    for index, word in enumerate(words):
        position = "capitals" if capitals else "first" if index == 0 else "inside"
        shape = WORD_SHAPES.index(word_shape(word))
        ids.append(1 + SENTENCE_POSITIONS.index(position) * len(WORD_SHAPES) + shape)
    return ids


def casing_ids(words: Sequence[str], word_ids: Sequence[int | None]) -> list[int]:
    """Per sub-token, the casing id of its word (``word_casings``); 0 where ``word_ids`` is None (special tokens).

    >>> casing_ids(["The", "IBM", "deal"], [None, 0, 1, 1, 2, None])
    [0, 8, 3, 3, 1, 0]
    """
    per_word = word_casings(words)
    return [0 if word is None else per_word[word] for word in word_ids]


__all__ = ["NUM_CASINGS", "SENTENCE_POSITIONS", "WORD_SHAPES", "casing_ids", "word_casings", "word_shape"]
