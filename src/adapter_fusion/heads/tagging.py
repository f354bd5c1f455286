"""Token classification head (NER, POS tagging): one label per token."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from adapter_fusion.heads.base import HEADS, HeadConfig

IGNORE_INDEX = -100
"""Label of positions that carry no loss: special tokens, padding, and every sub-token of a word but its first."""


class TokenClassificationHead(nn.Module):
    """dropout -> linear on every position's hidden state. Logits ``[batch, seq, num_labels]``.

    ``pooling`` and ``problem_type`` of the config play no part (there is no pooling: each token is classified).
    """

    def __init__(self, config: HeadConfig, hidden_size: int) -> None:
        super().__init__()
        self.config = config
        self.dropout = nn.Dropout(config.dropout)
        self.out = nn.Linear(hidden_size, config.num_labels)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[batch, seq, hidden] -> [batch, seq, num_labels]`` (padding positions get logits too; their labels
        are -100)."""
        return self.out(self.dropout(hidden))

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the positions whose label is not -100.

        ``logits [batch, seq, num_labels]``, ``labels [batch, seq]``. With no scored position at all the loss is
        NaN (0 / 0, as ``torch.nn.CrossEntropyLoss``), so a batch without labels is noticed rather than hidden.
        """
        if logits.dim() != 3 or labels.shape != logits.shape[:2]:
            raise ValueError(
                f"token classification loss needs logits [batch, seq, num_labels] and labels [batch, seq]; got "
                f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)}"
            )
        return F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1).long(), ignore_index=IGNORE_INDEX
        )


HEADS.register("token_classification", TokenClassificationHead)
