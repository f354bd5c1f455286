"""Multiple-choice head: one score per (context, option) sequence; cross-entropy over the options.

The encoder sees each option paired with its context as a separate sequence (``AdapterModel.forward`` flattens
``input_ids [batch, choices, seq]`` to ``[batch * choices, seq]`` and reshapes this head's ``[batch * choices, 1]``
scores back to ``[batch, choices]``), as in BERT's SWAG set-up (Devlin et al., 2019, https://arxiv.org/abs/1810.04805,
section 4.4). The head is a single scorer, so the same weights serve tasks with any number of options (PIQA 2,
DREAM 3, CODAH 4); ``HeadConfig.num_labels`` is 1.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from adapter_fusion.heads.base import HEADS, HeadConfig, pool


class MultipleChoiceHead(nn.Module):
    """pool -> dropout -> linear: ``hidden [n, seq, hidden] -> scores [n, 1]`` with ``n = batch * choices``."""

    def __init__(self, config: HeadConfig, hidden_size: int) -> None:
        super().__init__()
        if config.num_labels != 1:
            raise ValueError(
                f"a multiple_choice head scores each option on its own: num_labels must be 1; got {config.num_labels}"
            )
        self.config = config
        self.dropout = nn.Dropout(config.dropout)
        self.score = nn.Linear(hidden_size, 1)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``hidden [n, seq, hidden]``, ``attention_mask [n, seq]`` -> ``[n, 1]`` (one score per sequence)."""
        return self.score(self.dropout(pool(hidden, attention_mask, self.config.pooling)))

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of ``logits [batch, choices]`` (the option scores) against ``labels [batch]`` (indices)."""
        if logits.dim() != 2 or logits.shape[1] < 2:
            raise ValueError(
                f"multiple-choice logits must be [batch, choices] with at least 2 choices; got shape "
                f"{tuple(logits.shape)} (pass input_ids as [batch, choices, seq])"
            )
        return F.cross_entropy(logits.float(), labels.long())


HEADS.register("multiple_choice", MultipleChoiceHead)
