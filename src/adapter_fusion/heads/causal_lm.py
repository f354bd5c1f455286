"""Causal language-modelling head: the base model's own (usually tied) LM head, next-token cross-entropy.

It owns no weights. An ``AdapterModel`` loaded with ``causal_lm=True`` keeps the ``AutoModelForCausalLM``, whose
LM head already turns the last hidden states into vocabulary logits; this head takes those logits as they are
(``uses_lm_logits``), so they are computed once, and the same model generates with ``generate()`` natively.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from adapter_fusion.heads.base import HEADS, HeadConfig

IGNORE_INDEX = -100


class CausalLMHead(nn.Module):
    """Identity on the base model's LM logits ``[batch, seq, vocab]``; the loss predicts token ``t + 1`` from
    position ``t``. Labels equal to -100 (prompt and padding tokens, as preprocessing marks them) carry no loss.

    ``num_labels``, ``label_names``, ``pooling`` and ``dropout`` of the config play no part (the vocabulary is
    the base model's).
    """

    uses_lm_logits: ClassVar[bool] = True
    """Read by ``AdapterModel.forward``: the head's input is the causal LM's logits, not the hidden states."""

    def __init__(self, config: HeadConfig, hidden_size: int) -> None:
        super().__init__()
        self.config = config
        self.hidden_size = hidden_size

    def forward(self, logits: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[batch, seq, vocab] -> [batch, seq, vocab]`` (unchanged)."""
        return logits

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy over the positions whose label is not -100.

        ``logits [batch, seq, vocab]``, ``labels [batch, seq]`` aligned with the inputs (not shifted): position
        ``t``'s logits are scored against ``labels[:, t + 1]``. With no scored position at all the loss is NaN
        (0 / 0, like ``torch.nn.CrossEntropyLoss``), so an all-prompt batch is noticed rather than hidden.
        """
        if logits.dim() != 3 or labels.shape != logits.shape[:2]:
            raise ValueError(
                f"causal LM loss needs logits [batch, seq, vocab] and labels [batch, seq]; got logits "
                f"{tuple(logits.shape)} and labels {tuple(labels.shape)}"
            )
        shifted_logits = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
        shifted_labels = labels[:, 1:].reshape(-1).long()
        return F.cross_entropy(shifted_logits, shifted_labels, ignore_index=IGNORE_INDEX)

    def extra_repr(self) -> str:
        return "uses the base model's LM head"


HEADS.register("causal_lm", CausalLMHead)
