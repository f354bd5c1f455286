"""LoRA: a low-rank update of a linear layer (Hu et al., ICLR 2022, arXiv 2106.09685).

``y = W x + b + scaling * B A dropout(x)`` with ``A`` ``[r, in]`` and ``B`` ``[out, r]``; the module computes the
update only, the caller (the adapter manager's forward hook on the linear layer) adds it to the layer's output.
Parameter names follow PEFT (``lora_A.weight``, ``lora_B.weight``), so PEFT checkpoints map one to one.
"""

from __future__ import annotations

import math

import torch
from torch import nn

LORA_INITIALIZATIONS = ("kaiming", "gaussian")


class LoraAdapter(nn.Module):
    """``delta(x) = scaling * B(A(dropout(x)))``.

    Shapes: ``x`` is ``[..., in_features]``; ``delta(x)`` is ``[..., out_features]``; the rank-``r`` activations
    ``A x`` are ``[..., r]``. ``B`` starts at zero, so a new LoRA adapter leaves the model unchanged.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        r: int,
        scaling: float = 1.0,
        dropout: float = 0.0,
        initialization: str = "kaiming",
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.r = r
        self.scaling = float(scaling)
        self.dropout = nn.Dropout(dropout)
        self.lora_A = nn.Linear(in_features, r, bias=False)
        self.lora_B = nn.Linear(r, out_features, bias=False)
        self.reset_parameters(initialization)

    def reset_parameters(self, initialization: str = "kaiming") -> None:
        # PEFT's init_lora_weights=True ("kaiming") and "gaussian"; B = 0 either way (start at identity)
        if initialization == "kaiming":
            nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        elif initialization == "gaussian":
            nn.init.normal_(self.lora_A.weight, std=1 / self.r)
        else:
            raise ValueError(f"initialization must be one of {LORA_INITIALIZATIONS}; got {initialization!r}")
        nn.init.zeros_(self.lora_B.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``delta(x)``, ``[..., out_features]``."""
        delta = self.lora_B(self.lora_A(self.dropout(x)))
        return delta if self.scaling == 1.0 else delta * self.scaling

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, r={self.r}, scaling={self.scaling}"
