"""Token classification head (NER, POS tagging): one label per token, optionally told each word's casing."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from adapter_fusion.heads.base import HEADS, HeadConfig

IGNORE_INDEX = -100
"""Label of positions that carry no loss: special tokens, padding, and every sub-token of a word but its first."""

NUM_CASINGS = 1 + 6 * 3
"""Rows of the casing embedding: id 0 for special tokens and padding, then one per word casing class that
``adapter_fusion.tasks.tagging.features.casing_ids`` gives (6 shapes x 3 sentence positions). Saved heads hold this
many rows, so the number is part of their file format."""


class TokenClassificationHead(nn.Module):
    """dropout -> linear on every position's hidden state. Logits ``[batch, seq, num_labels]``.

    With ``config.casing_dim > 0`` the head also reads ``casing_ids [batch, seq]`` (made by the tagging task,
    ``adapter_fusion.tasks.tagging.features.casing_ids``): an embedding of
    each word's casing is concatenated to the hidden state and a GELU layer mixes the two before the output layer:
    ``out(gelu(mix([dropout(hidden); casing(ids)])))``. Uncased tokenizers (the default MiniLM's among them) lower
    the text before the model sees it, and the case is much of what tells a proper noun (NNP) from a common noun,
    or an entity from a word (Collobert et al. 2011 gave their tagger the same kind of "caps" feature).

    ``pooling`` and ``problem_type`` of the config play no part (there is no pooling: each token is classified).
    """

    extra_inputs = ("casing_ids",)
    """Inputs beside the hidden states that ``AdapterModel.forward`` hands to this head (never to the encoder)."""

    def __init__(self, config: HeadConfig, hidden_size: int) -> None:
        super().__init__()
        self.config = config
        self.dropout = nn.Dropout(config.dropout)
        if config.casing_dim:
            self.casing = nn.Embedding(NUM_CASINGS, config.casing_dim)
            self.mix = nn.Linear(hidden_size + config.casing_dim, hidden_size)
        self.out = nn.Linear(hidden_size, config.num_labels)

    def forward(
        self,
        hidden: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        casing_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``[batch, seq, hidden] -> [batch, seq, num_labels]`` (padding positions get logits too; their labels
        are -100). ``casing_ids [batch, seq]`` is required when the head uses casing and ignored otherwise."""
        hidden = self.dropout(hidden)
        if not self.config.casing_dim:
            return self.out(hidden)
        if casing_ids is None:
            raise ValueError(
                "this token classification head uses casing (casing_dim="
                f"{self.config.casing_dim}) and needs casing_ids [batch, seq] beside input_ids; the tagging task's "
                "preprocess and predict make them (adapter_fusion.tasks.tagging.features.casing_ids)"
            )
        if casing_ids.shape != hidden.shape[:2]:
            raise ValueError(
                f"casing_ids must be [batch, seq] = {tuple(hidden.shape[:2])}; got {tuple(casing_ids.shape)}"
            )
        casing = self.casing(casing_ids.long()).to(hidden.dtype)
        return self.out(F.gelu(self.mix(torch.cat([hidden, casing], dim=-1))))

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
