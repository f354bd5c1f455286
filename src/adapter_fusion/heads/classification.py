"""Sequence classification and regression head (single sentences and sentence pairs)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from adapter_fusion.heads.base import HEADS, HeadConfig, pool


class ClassificationHead(nn.Module):
    """pool -> dropout -> dense -> tanh -> dropout -> out. Logits ``[batch, num_labels]``."""

    def __init__(self, config: HeadConfig, hidden_size: int) -> None:
        super().__init__()
        self.config = config
        self.dropout = nn.Dropout(config.dropout)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.out = nn.Linear(hidden_size, config.num_labels)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        pooled = pool(hidden, attention_mask, self.config.pooling)
        x = torch.tanh(self.dense(self.dropout(pooled)))
        return self.out(self.dropout(x))

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.config.problem_type == "regression":
            return F.mse_loss(logits.squeeze(-1).float(), labels.float())
        return F.cross_entropy(logits.float(), labels.long())


HEADS.register("classification", ClassificationHead, aliases=("regression",))
