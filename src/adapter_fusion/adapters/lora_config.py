"""Configuration of a LoRA adapter (Hu et al., ICLR 2022, arXiv 2106.09685), the fields named as in PEFT's
``LoraConfig`` where they mean the same."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

from adapter_fusion.adapters.lora import LORA_INITIALIZATIONS
from adapter_fusion.config import JsonConfig, check_choice, check_positive, check_range


@dataclasses.dataclass(frozen=True)
class LoraConfig(JsonConfig):
    """A LoRA adapter: ``W x + b + (alpha / r) B A x`` on the chosen linear layers of every chosen layer."""

    config_type: ClassVar[str] = "lora_adapter"
    kind: ClassVar[str] = "lora"

    r: int = 8
    """Rank of the update B A."""
    alpha: float = 8.0
    """The update is scaled by alpha / r (alpha / sqrt(r) with use_rslora)."""
    dropout: float = 0.0
    """Dropout on the LoRA input during training."""
    target_modules: tuple[str, ...] | None = None
    """Linear layers to adapt, by their path inside a transformer layer: an entry names the layer at exactly that
    path ('output.dense' is BERT's FFN output, not 'attention.output.dense'), else every linear layer whose path
    ends with '.' + entry ('query', 'dense'); when unset, the architecture's attention query and value
    projections (PEFT's default)."""
    layers: tuple[int, ...] | None = None
    """Indices of the transformer layers that get LoRA; all layers when unset."""
    use_rslora: bool = False
    """Rank-stabilised scaling alpha / sqrt(r) (Kalajdzievski 2023) instead of alpha / r."""
    initialization: str = "kaiming"
    """'kaiming' (A from PEFT's Kaiming-uniform) or 'gaussian' (A from N(0, 1/r)); B starts at zero either way."""

    def __post_init__(self) -> None:
        check_positive("r", self.r, integer=True)
        check_positive("alpha", self.alpha)
        check_range("dropout", self.dropout, 0.0, 1.0)
        for field in ("target_modules", "layers"):
            if isinstance(getattr(self, field), list):
                object.__setattr__(self, field, tuple(getattr(self, field)))
        targets = self.target_modules
        if targets is not None and (not targets or not all(isinstance(t, str) and t.strip(".") for t in targets)):
            raise ValueError(f"target_modules must be a non-empty sequence of module names or None; got {targets!r}")
        if self.layers is not None and (
            not self.layers or not all(isinstance(i, int) and not isinstance(i, bool) for i in self.layers)
        ):
            raise ValueError(f"layers must be a non-empty sequence of layer indices or None; got {self.layers!r}")
        if not isinstance(self.use_rslora, bool):
            raise TypeError(f"use_rslora must be a bool; got {self.use_rslora!r}")
        check_choice("initialization", self.initialization, LORA_INITIALIZATIONS)

    @property
    def scaling(self) -> float:
        """The factor on ``B A x``: ``alpha / r``, or ``alpha / sqrt(r)`` with ``use_rslora``."""
        return self.alpha / (math.sqrt(self.r) if self.use_rslora else self.r)
