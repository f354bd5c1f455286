"""Extractive QA: splitting long contexts into overlapping token windows, labelling the answer in each window, and
decoding the best answer span back to character offsets; also the answer checks and the collator. Pure functions
(a tokenizer and arrays in, lists out), used by the ``extractive_qa`` task type (``adapter_fusion.tasks.qa``) and
tested directly.

A window is ``[CLS] question [SEP] context part [SEP]``: the tokenizer's ``stride`` makes consecutive windows of one
example share ``doc_stride`` context tokens, so an answer cut by one window's edge lies whole in the next (as long
as it is shorter than ``doc_stride`` tokens). Each window keeps ``offset_mapping``: per token, the ``[start, end)``
character span it covers in the ORIGINAL context, or None for question, special and padding tokens. Decoding reads
only those offsets, so a predicted answer is always a substring of the context.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from adapter_fusion.tasks.types import as_mapping

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

DOC_STRIDE = 128
"""Default overlap, in tokens, of consecutive windows of one context (as BERT's SQuAD recipe, with max_length 384);
capped at ``max_length // 4`` so that short windows still advance (``doc_stride_for``)."""
MAX_ANSWER_TOKENS = 30
"""Longest answer span decoding considers, in tokens (BERT's SQuAD recipe)."""
TOP_K = 20
"""Decoding pairs the ``TOP_K`` best start tokens of a window with its ``TOP_K`` best end tokens."""
NO_ANSWER = (0, 0)
"""Label of a window that does not hold the whole answer: start = end = position 0 (the CLS token)."""

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
"""Feature columns the model takes (``SpanCollator`` keeps these and ``labels``)."""

Offsets = Sequence[Sequence[int] | None]
"""Per token of a window: ``(start, end)`` character offsets in the context, or None outside the context."""


@dataclass(frozen=True)
class Span:
    """A decoded answer: characters ``[start, end)`` of the context."""

    start: int
    """First character of the answer in the context."""
    end: int
    """One past its last character."""
    score: float
    """Start logit + end logit: ranks spans across the windows of an example."""
    probability: float
    """Softmax probability of the start token times that of the end token, over the context tokens of the window
    the span was found in."""


def doc_stride_for(max_length: int, doc_stride: int | None = None) -> int:
    """The window overlap for ``max_length``: ``doc_stride`` if given, else ``min(DOC_STRIDE, max_length // 4)``."""
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 8:
        raise ValueError(f"max_length must be an int >= 8 for extractive QA windows; got {max_length!r}")
    stride = min(DOC_STRIDE, max_length // 4) if doc_stride is None else doc_stride
    if isinstance(stride, bool) or not isinstance(stride, int) or not 0 <= stride < max_length:
        raise ValueError(f"doc_stride must be an int in [0, max_length={max_length}); got {stride!r}")
    return stride


def make_windows(
    tokenizer: PreTrainedTokenizerBase,
    questions: Sequence[str],
    contexts: Sequence[str],
    max_length: int,
    doc_stride: int,
    ids: Sequence[str] | None = None,
) -> dict[str, list[Any]]:
    """Tokenise (question, context) pairs into windows of at most ``max_length`` tokens.

    Only the context is split (``truncation="only_second"``); consecutive windows of one context share
    ``doc_stride`` tokens. Questions are stripped of leading whitespace (it would only waste window space).

    Args:
        tokenizer: a fast Hugging Face tokenizer (offsets and sequence ids are needed).
        questions, contexts: one pair per example.
        max_length: tokens per window, special tokens included.
        doc_stride: tokens shared by consecutive windows.
        ids: example ids, quoted in errors (default: ``inputs[i]``).

    Returns:
        Columns with one row per window: the tokenizer's model inputs (``input_ids``, ``attention_mask``, and
        ``token_type_ids`` where the tokenizer makes them), ``example_index`` (the pair it came from) and
        ``offset_mapping`` (``[start, end]`` in the context per context token, None elsewhere).

    Raises:
        ValueError: naming the example when its question leaves no room for ``doc_stride`` + 1 context tokens.
    """
    if len(questions) != len(contexts):
        raise ValueError(f"got {len(questions)} questions but {len(contexts)} contexts")
    names = [f"inputs[{i}]" for i in range(len(questions))] if ids is None else [str(i) for i in ids]
    questions = [question.lstrip() for question in questions]
    room = max_length - tokenizer.num_special_tokens_to_add(pair=True) - doc_stride
    question_lengths = [len(ids) for ids in tokenizer(questions, add_special_tokens=False)["input_ids"]]
    for name, length in zip(names, question_lengths):
        if length >= room:  # the tokenizer would panic: windows must keep more than doc_stride context tokens
            raise ValueError(
                f"example {name}: its question is {length} tokens, too long for windows of max_length={max_length} "
                f"with doc_stride={doc_stride} (questions may have at most {room - 1} tokens here); raise max_length "
                "or shorten the question"
            )
    encoded = tokenizer(
        questions,
        list(contexts),
        truncation="only_second",
        max_length=max_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    windows: dict[str, list[Any]] = {
        key: list(encoded[key]) for key in ("input_ids", "attention_mask", "token_type_ids") if key in encoded
    }
    windows["example_index"] = [int(index) for index in encoded["overflow_to_sample_mapping"]]
    windows["offset_mapping"] = [
        [list(offset) if sequence == 1 else None for offset, sequence in zip(offsets, encoded.sequence_ids(w))]
        for w, offsets in enumerate(encoded["offset_mapping"])
    ]
    return windows


def answer_spans(example: Mapping[str, Any], where: str) -> list[tuple[int, int]]:
    """The ``(start, end)`` character spans of an example's answers, each checked against its context.

    Raises ``ValueError`` naming ``where`` and the example's id when a field is empty or an answer's text is not at
    its ``answer_start`` in the context."""
    qid = example.get("id")
    name = f"{where}: example id {qid!r}"
    for key in ("question", "context"):
        if not isinstance(example.get(key), str) or not example[key].strip():
            raise ValueError(f"{name}: {key!r} must be a non-empty string; got {example.get(key)!r}")
    answers = as_mapping(example.get("answers"), f"{name}: 'answers'")
    texts, starts = answers.get("text"), answers.get("answer_start")
    if not isinstance(texts, Sequence) or not isinstance(starts, Sequence) or len(texts) != len(starts) or not texts:
        raise ValueError(
            f"{name}: 'answers' must be {{'text': [...], 'answer_start': [...]}} with at least one answer and equal "
            f"lengths (extractive_qa has no unanswerable questions); got {dict(answers)!r}"
        )
    context, spans = example["context"], []
    for text, start in zip(texts, starts):
        if (
            not isinstance(text, str)
            or not text
            or isinstance(start, bool)
            or not isinstance(start, (int, np.integer))
        ):
            raise ValueError(
                f"{name}: an answer must be a non-empty text with an int answer_start; got {text!r} at {start!r}"
            )
        if not (start >= 0 and context.startswith(text, start)):
            found = context[start : start + len(text)] if 0 <= start < len(context) else "(outside the context)"
            raise ValueError(
                f"{name}: answer {text!r} is not in the context at answer_start={start} (the context has {found!r} "
                "there); fix the offset (tasks.qa.readers.read_squad(realign=True) moves answers to their nearest "
                "occurrence)"
            )
        spans.append((int(start), int(start) + len(text)))
    return spans


def label_window(offsets: Offsets, answer_start: int, answer_end: int) -> tuple[int, int]:
    """``(start_token, end_token)`` of the answer characters ``[answer_start, answer_end)`` in a window, or
    ``NO_ANSWER`` when the window's context part does not hold the whole answer.

    >>> label_window([None, None, [0, 3], [4, 9], [10, 12], None], 4, 12)
    (3, 4)
    """
    context = [i for i, offset in enumerate(offsets) if offset is not None]
    if not context or answer_end <= answer_start:
        return NO_ANSWER
    first, last = context[0], context[-1]
    if offsets[first][0] > answer_start or offsets[last][1] < answer_end:  # type: ignore[index]
        return NO_ANSWER
    start = next(i for i in context if offsets[i][1] > answer_start)  # type: ignore[index]
    end = next(i for i in reversed(context) if offsets[i][0] < answer_end)  # type: ignore[index]
    return (start, end) if start <= end else NO_ANSWER


def _log_softmax(values: np.ndarray) -> np.ndarray:
    shifted = values - values.max()
    return shifted - math.log(float(np.exp(shifted).sum()))


def decode_spans(
    start_logits: Sequence[float] | np.ndarray,
    end_logits: Sequence[float] | np.ndarray,
    offsets: Offsets,
    *,
    top_k: int = TOP_K,
    max_answer_tokens: int = MAX_ANSWER_TOKENS,
) -> list[Span]:
    """The valid answer spans of one window, best first (by ``start + end`` logit).

    A span ``[i, j]`` is valid when both tokens are context tokens (``offsets[t]`` is not None), ``j >= i`` and it
    has at most ``max_answer_tokens`` tokens. Candidates pair the ``top_k`` best context start tokens with the
    ``top_k`` best context end tokens; if none of those pairs is valid, every valid span is considered.

    Args:
        start_logits, end_logits: ``[seq]`` scores of the window (longer than ``offsets`` when padded in a batch:
            the tail is ignored).
        offsets: the window's context offsets (``make_windows``).
    """
    length = len(offsets)
    starts = np.asarray(start_logits, dtype=np.float64)[:length]
    ends = np.asarray(end_logits, dtype=np.float64)[:length]
    if starts.shape != (length,) or ends.shape != (length,):
        raise ValueError(
            f"start/end logits must have at least one score per token ({length}); got shapes "
            f"{np.shape(start_logits)} and {np.shape(end_logits)}"
        )
    context = np.flatnonzero([offset is not None for offset in offsets])
    if context.size == 0:
        return []
    k = min(top_k, context.size)
    best_starts = context[np.argsort(-starts[context], kind="stable")[:k]]
    best_ends = context[np.argsort(-ends[context], kind="stable")[:k]]
    pairs = [(i, j) for i in best_starts for j in best_ends if i <= j < i + max_answer_tokens]
    if not pairs:
        pairs = [(i, j) for i in context for j in context if i <= j < i + max_answer_tokens]
    start_log_probs, end_log_probs = np.full(length, -np.inf), np.full(length, -np.inf)
    start_log_probs[context], end_log_probs[context] = _log_softmax(starts[context]), _log_softmax(ends[context])
    spans = [
        Span(
            start=int(offsets[i][0]),  # type: ignore[index]
            end=int(offsets[j][1]),  # type: ignore[index]
            score=float(starts[i] + ends[j]),
            probability=float(np.exp(start_log_probs[i] + end_log_probs[j])),
        )
        for i, j in pairs
    ]
    return sorted(spans, key=lambda span: (-span.score, span.start, span.end))


def best_span(
    windows: Iterable[tuple[Any, Any, Offsets]], *, top_k: int = TOP_K, max_answer_tokens: int = MAX_ANSWER_TOKENS
) -> Span | None:
    """The best valid span over all windows ``(start_logits, end_logits, offsets)`` of one example (the highest
    ``score``; the earlier window on a tie), or None when no window has a context token."""
    best: Span | None = None
    for start_logits, end_logits, offsets in windows:
        spans = decode_spans(start_logits, end_logits, offsets, top_k=top_k, max_answer_tokens=max_answer_tokens)
        if spans and (best is None or spans[0].score > best.score):
            best = spans[0]
    return best


def decode_examples(
    logits: np.ndarray | Sequence[np.ndarray],
    example_index: Sequence[int],
    offsets: Sequence[Offsets],
    num_examples: int,
    *,
    top_k: int = TOP_K,
    max_answer_tokens: int = MAX_ANSWER_TOKENS,
) -> list[Span | None]:
    """One best span per example from the logits of all windows.

    Args:
        logits: per window ``[seq, 2]`` (start, end) scores: an array ``[windows, seq, 2]`` or a list of arrays.
        example_index: per window, the example it belongs to (``0 <= index < num_examples``).
        offsets: per window, its context offsets.
    """
    if not len(logits) == len(example_index) == len(offsets):
        raise ValueError(
            f"need one logits row, example index and offsets list per window; got {len(logits)} logits rows, "
            f"{len(example_index)} example indices and {len(offsets)} offsets lists"
        )
    by_example: list[list[tuple[Any, Any, Offsets]]] = [[] for _ in range(num_examples)]
    for row, example, window_offsets in zip(logits, example_index, offsets):
        if not 0 <= example < num_examples:
            raise ValueError(f"example index {example} is outside 0..{num_examples - 1}")
        scores = np.asarray(row)
        if scores.ndim != 2 or scores.shape[-1] != 2:
            raise ValueError(f"each window's logits must have shape [seq, 2]; got {scores.shape}")
        by_example[example].append((scores[:, 0], scores[:, 1], window_offsets))
    return [best_span(windows, top_k=top_k, max_answer_tokens=max_answer_tokens) for windows in by_example]


class SpanCollator:
    """Right-pads the model inputs of a list of window features to the longest one and stacks ``labels [batch, 2]``;
    metadata columns (``example_index``, ``offset_mapping``) and anything else are dropped."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(feature["input_ids"]) for feature in features)
        batch: dict[str, torch.Tensor] = {}
        for key in MODEL_INPUTS:
            if key in features[0]:
                pad = self.pad_token_id if key == "input_ids" else 0
                batch[key] = torch.tensor([list(f[key]) + [pad] * (width - len(f[key])) for f in features])
        if "labels" in features[0]:
            batch["labels"] = torch.tensor([list(feature["labels"]) for feature in features], dtype=torch.long)
        return batch
