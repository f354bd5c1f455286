"""Span head for extractive question answering (SQuAD-style): a start and an end score per token.

As BERT's QA head (Devlin et al., 2019, https://arxiv.org/abs/1810.04805, section 4.2): one linear map from each
token's hidden state to two logits; the answer is the span ``[i, j]`` maximising ``start[i] + end[j]``. Decoding
(valid spans only, across the windows of a long context) lives in ``adapter_fusion.tasks.qa.spans``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from adapter_fusion.heads.base import HEADS, HeadConfig

IGNORE_INDEX = -100
"""A start/end label equal to this (or outside the sequence) carries no loss."""


class SpanHead(nn.Module):
    """dropout -> linear ``hidden -> 2``. Logits ``[batch, seq, 2]``: ``[..., 0]`` start, ``[..., 1]`` end scores.

    ``loss(logits, labels)`` takes ``labels [batch, 2]`` = (start token, end token) per sequence (position 0, the
    first token, means "no answer in this sequence") and returns the mean of the start and end cross-entropies over
    the sequence positions. ``num_labels``, ``label_names`` and ``pooling`` of the config are not used.
    """

    def __init__(self, config: HeadConfig, hidden_size: int) -> None:
        super().__init__()
        self.config = config
        self.dropout = nn.Dropout(config.dropout)
        self.out = nn.Linear(hidden_size, 2)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``hidden [batch, seq, hidden] -> logits [batch, seq, 2]`` (``attention_mask`` is not needed: decoding
        only ever picks context tokens)."""
        return self.out(self.dropout(hidden))

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean of the start and end cross-entropies. ``logits [batch, seq, 2]``, ``labels [batch, 2]`` (token
        positions; a position outside ``0..seq-1`` or -100 is ignored, as BERT's QA head clamps and ignores)."""
        if logits.dim() != 3 or logits.shape[-1] != 2:
            raise ValueError(f"span logits must have shape [batch, seq, 2]; got {tuple(logits.shape)}")
        if labels.shape != (logits.shape[0], 2):
            raise ValueError(
                f"span labels must have shape [batch, 2] = (start, end) token positions, here "
                f"[{logits.shape[0]}, 2]; got {tuple(labels.shape)}"
            )
        positions = labels.long()
        positions = positions.masked_fill((positions < 0) | (positions >= logits.shape[1]), IGNORE_INDEX)
        start, end = logits.float().unbind(dim=-1)
        start_loss = F.cross_entropy(start, positions[:, 0], ignore_index=IGNORE_INDEX)
        end_loss = F.cross_entropy(end, positions[:, 1], ignore_index=IGNORE_INDEX)
        return (start_loss + end_loss) / 2


HEADS.register("span", SpanHead, aliases=("question_answering",))
