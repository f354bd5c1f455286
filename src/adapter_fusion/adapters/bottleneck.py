"""The bottleneck adapter module (Houlsby et al., ICML 2019, arXiv 1902.00751)."""

from __future__ import annotations

import torch
from torch import nn

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "tanh": nn.Tanh,
}


class BottleneckAdapter(nn.Module):
    """``delta(x) = scaling * up(activation(down(x)))``; the caller adds it to a residual stream.

    Shapes: ``x`` is ``[..., hidden]``; ``delta(x)`` is ``[..., hidden]``. The bottleneck activations
    ``activation(down(x))`` are ``[..., bottleneck]``.
    """

    def __init__(
        self,
        hidden_size: int,
        bottleneck_size: int,
        activation: str = "relu",
        dropout: float = 0.0,
        scaling: float = 1.0,
        initialization: str = "near_identity",
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}; got {activation!r}")
        self.hidden_size = hidden_size
        self.bottleneck_size = bottleneck_size
        self.scaling = scaling
        self.down = nn.Linear(hidden_size, bottleneck_size)
        self.activation = _ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(bottleneck_size, hidden_size)
        self.reset_parameters(initialization)

    def reset_parameters(self, initialization: str = "near_identity") -> None:
        if initialization == "near_identity":
            # Start at identity: the up-projection is zero, so the adapter adds nothing until it trains.
            nn.init.normal_(self.down.weight, std=1e-2)
            nn.init.zeros_(self.up.weight)
        elif initialization == "bert":
            nn.init.normal_(self.down.weight, std=0.02)
            nn.init.normal_(self.up.weight, std=0.02)
        else:
            raise ValueError(f"initialization must be 'near_identity' or 'bert'; got {initialization!r}")
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.bias)

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., hidden] -> [..., bottleneck]``."""
        return self.dropout(self.activation(self.down(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``delta(x)``, ``[..., hidden]``."""
        delta = self.up(self.bottleneck(x))
        return delta if self.scaling == 1.0 else delta * self.scaling

    def extra_repr(self) -> str:
        return f"hidden={self.hidden_size}, bottleneck={self.bottleneck_size}, scaling={self.scaling}"


def num_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
