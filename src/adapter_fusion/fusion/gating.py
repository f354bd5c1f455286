"""Gating fusion: per-token gates over the adapters, read from the sub-layer output.

``g = sigmoid((Wg h + bg) / T)`` (independent gates in ``(0, 1)``) or ``softmax((Wg h + bg) / T)`` (gates that
sum to 1); ``out = residual + sum_i g_i up_i``. ``Wg`` starts at zero and ``bg`` at zero, so the gates start
equal: 0.5 each for sigmoid (fusing one adapter then gives ``h + up / 2``: half the adapter) and ``1 / N`` for
softmax (fusing one adapter gives exactly the adapter).

Fast path: the N gate rows join the down-projections in the one matmul of ``h``; the mixture is one matmul of
``[g (x) a, g]`` with the packed up columns. Per token ``(2R + 2N) d``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F

from adapter_fusion.config import check_choice
from adapter_fusion.fusion.base import FusionLayer, FusionOutput, Products, one_of
from adapter_fusion.fusion.packing import AdapterPack
from adapter_fusion.fusion.registry import (
    FUSION_METHODS,
    FusionMethod,
    FusionPoint,
    MethodConfig,
    reference_contributions,
)

if TYPE_CHECKING:
    from adapter_fusion.adapters import BottleneckAdapter, LoraAdapter
    from adapter_fusion.fusion.config import FusionConfig

GATE_ACTIVATIONS = ("sigmoid", "softmax")


@dataclasses.dataclass(frozen=True)
class GatingFusionConfig(MethodConfig):
    """Gating fusion settings."""

    config_type = "fusion.gating"

    gate_activation: str = "sigmoid"
    """Gating fusion: 'sigmoid' (independent gates in (0, 1)) or 'softmax' (gates sum to 1)."""
    gate_bias: bool = True
    """Gating fusion: learn a bias of the gates."""

    def __post_init__(self) -> None:
        check_choice("gate_activation", self.gate_activation, GATE_ACTIVATIONS)
        if not isinstance(self.gate_bias, bool):
            raise TypeError(f"gate_bias must be a bool; got {self.gate_bias!r}")


class GatingFusion(FusionLayer):
    """``h + sum_i g_i(h) up_i`` with gates from a linear map of ``h``.

    Args:
        hidden_size: ``d``.
        num_adapters: ``N``.
        activation: ``"sigmoid"`` (independent gates) or ``"softmax"`` (gates sum to 1).
        bias: learn a gate bias ``bg``.
        temperature: gates read ``(Wg h + bg) / T``.
        gate_activation, gate_bias: the documented names of ``activation`` and ``bias``.

    Parameters: ``gate``, an ``nn.Linear(d, N)``, zero-initialised.
    """

    def __init__(
        self,
        hidden_size: int,
        num_adapters: int,
        activation: str | None = None,
        bias: bool | None = None,
        *,
        temperature: float = 1.0,
        gate_activation: str | None = None,
        gate_bias: bool | None = None,
    ) -> None:
        activation = one_of("activation", activation, "gate_activation", gate_activation, "sigmoid")
        bias = one_of("bias", bias, "gate_bias", gate_bias, True)
        super().__init__(hidden_size, num_adapters, temperature)
        if activation not in GATE_ACTIVATIONS:
            raise ValueError(f"gate_activation must be one of {GATE_ACTIVATIONS}; got {activation!r}")
        self.activation = activation
        self.gate = nn.Linear(hidden_size, num_adapters, bias=bias)
        nn.init.zeros_(self.gate.weight)
        if self.gate.bias is not None:
            nn.init.zeros_(self.gate.bias)

    @property
    def normalized(self) -> bool:
        return self.activation == "softmax"

    def gates(self, logits: torch.Tensor) -> torch.Tensor:
        """``[..., N]`` gate logits -> gates."""
        logits = logits / self.temperature
        return torch.softmax(logits, dim=-1) if self.activation == "softmax" else torch.sigmoid(logits)

    def _products(self, pack: AdapterPack) -> Products:
        products: Products = {"up_columns": pack.up_columns(), "extra_weight": self.select(self.gate.weight)}
        if self.gate.bias is not None:
            products["extra_bias"] = self.select(self.gate.bias)
        return products

    def _mix(
        self, activations: torch.Tensor, extra: torch.Tensor, pack: AdapterPack, products: Products
    ) -> tuple[torch.Tensor, torch.Tensor]:
        g = self.gates(extra)  # [T, N]
        mixed = torch.cat([pack.scale(activations, g), g], dim=-1)  # [T, R + N]
        return F.linear(mixed, products["up_columns"]), g


def reference_gating(
    layer: GatingFusion,
    hidden: torch.Tensor,
    adapters: Sequence[BottleneckAdapter | LoraAdapter],
    ffn_input: torch.Tensor | None = None,
    *,
    reads_ffn_input: Sequence[bool] | None = None,
    residual: bool = True,
    module_input: torch.Tensor | None = None,
) -> FusionOutput:
    """Run every adapter, gate and sum. For tests and benchmarks."""
    ups = reference_contributions(hidden, adapters, ffn_input, reads_ffn_input, module_input)  # [..., N, d]
    logits = layer.gate(hidden) / layer.temperature
    g = torch.softmax(logits, -1) if layer.activation == "softmax" else torch.sigmoid(logits)
    mixed = (g.unsqueeze(-1) * ups).sum(-2)
    return FusionOutput(hidden + mixed if residual else mixed, g)


def build_gating(config: FusionConfig, point: FusionPoint, shared: dict[str, Any]) -> GatingFusion:
    settings = config.settings_of(GatingFusionConfig)
    return GatingFusion(
        point.hidden_size,
        point.num_adapters,
        activation=settings.gate_activation,
        bias=settings.gate_bias,
        temperature=config.temperature,
    )


FUSION_METHODS.register(
    "gating",
    FusionMethod(
        layer_class=GatingFusion,
        build=build_gating,
        reference=reference_gating,
        single_adapter_identity={"gate_activation": "softmax"},
        config_class=GatingFusionConfig,
        description="per-token sigmoid or softmax gates over the adapters, from the sub-layer output",
    ),
)
