"""Task heads: a registry of head types and their JSON-serialisable config."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
from torch import nn

from adapter_fusion.config import JsonConfig, check_choice, check_positive, check_probability
from adapter_fusion.registry import Registry

POOLINGS = ("cls", "mean", "last")
PROBLEM_TYPES = ("single_label_classification", "regression")


@dataclasses.dataclass(frozen=True)
class HeadConfig(JsonConfig):
    """A prediction head on top of the transformer's last hidden states (or, for ``causal_lm``, on the causal LM's
    own logits)."""

    config_type: ClassVar[str] = "head"

    head_type: str = "classification"
    """Registered head type (see ``HEADS``), e.g. 'classification' (alias 'regression') or 'causal_lm' (the base
    causal LM's own LM head and next-token loss; it ignores the fields below)."""
    num_labels: int = 2
    """Number of output classes (1 for regression)."""
    label_names: tuple[str, ...] = ()
    """Human-readable name of each class id."""
    pooling: str = "cls"
    """How a sequence becomes one vector: 'cls' (first token), 'mean' (masked mean) or 'last' (last real token,
    for decoders)."""
    dropout: float = 0.1
    """Dropout before each head projection during training."""
    problem_type: str = "single_label_classification"
    """'single_label_classification' (cross-entropy) or 'regression' (mean squared error)."""
    task: str | None = None
    """Name of the task this head was trained for, if any."""
    casing_dim: int = 0
    """Token classification heads only: size of a learned embedding of each word's casing (lower, Title, UPPER,
    ...; see ``heads.tagging``) that the head reads beside the hidden states; 0 = none."""

    def __post_init__(self) -> None:
        if self.head_type not in HEADS:
            raise ValueError(f"head_type must be one of {HEADS.names()}; got {self.head_type!r}")
        check_positive("num_labels", self.num_labels, integer=True)
        if isinstance(self.label_names, list):
            object.__setattr__(self, "label_names", tuple(self.label_names))
        if self.label_names and len(self.label_names) != self.num_labels:
            raise ValueError(
                f"label_names has {len(self.label_names)} names but num_labels is {self.num_labels}: "
                f"{list(self.label_names)}"
            )
        check_choice("pooling", self.pooling, POOLINGS)
        check_probability("dropout", self.dropout)
        check_choice("problem_type", self.problem_type, PROBLEM_TYPES)
        check_positive("casing_dim", self.casing_dim, allow_zero=True, integer=True)
        if self.casing_dim and self.head_type != "token_classification":
            raise ValueError(
                f"casing_dim is for token_classification heads (a word's casing beside its hidden state); got "
                f"casing_dim={self.casing_dim} for head_type {self.head_type!r}"
            )
        if self.problem_type == "regression" and self.num_labels != 1:
            raise ValueError(f"a regression head has num_labels=1; got num_labels={self.num_labels}")


HEADS: Registry[type[nn.Module]] = Registry("head type")


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None, pooling: str) -> torch.Tensor:
    """``[batch, seq, hidden] -> [batch, hidden]``."""
    if pooling == "cls":
        return hidden[:, 0]
    if attention_mask is None:
        return hidden.mean(dim=1) if pooling == "mean" else hidden[:, -1]
    mask = attention_mask.to(hidden.dtype)
    if pooling == "mean":
        return (hidden * mask.unsqueeze(-1)).sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1.0)
    # last real token (right padding): index of the last 1 in the mask
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = (positions * attention_mask.long()).argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def head_inputs() -> tuple[str, ...]:
    """Names of the inputs registered heads read beside the hidden states (a head class's ``extra_inputs``, e.g.
    the tagging head's ``casing_ids``): the model hands them to its head and never to the encoder."""
    return tuple(dict.fromkeys(name for _, head in HEADS.items() for name in getattr(head, "extra_inputs", ())))


def build_head(config: HeadConfig, hidden_size: int) -> nn.Module:
    return HEADS.get(config.head_type)(config, hidden_size)
