"""Weighted fusion: a learned (or fixed) convex combination of the adapters' contributions.

``out = residual + sum_i w_i up_i`` with ``w = softmax(logits / T)`` per layer (or one set of logits shared
by every fused point), or fixed weights normalised to sum to 1. The weights don't depend on the token, so
they fold into the up-projection once per forward: ``out = residual + (U diag(w)) a + C w``, i.e. the cost of
running the N adapters as one wide adapter (``2 R d`` per token).
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

WEIGHT_INITIALIZATIONS = ("uniform", "normal")
WEIGHT_SHARINGS = ("per_layer", "shared")


@dataclasses.dataclass(frozen=True)
class WeightedFusionConfig(MethodConfig):
    """Weighted fusion settings."""

    config_type = "fusion.weighted"

    learnable_weights: bool = True
    """Weighted fusion: learn the weights; otherwise use fixed_weights."""
    weight_sharing: str = "per_layer"
    """Weighted fusion: 'per_layer' (weights per fused point) or 'shared' (one set for every layer)."""
    weight_initialization: str = "uniform"
    """Weighted fusion: 'uniform' (equal weights at start) or 'normal' (logits drawn from N(0, 0.02))."""
    fixed_weights: tuple[float, ...] | None = None
    """Weighted fusion with learnable_weights off: one non-negative weight per adapter (normalised to sum 1);
    uniform when unset."""

    def __post_init__(self) -> None:
        if isinstance(self.fixed_weights, list):
            object.__setattr__(self, "fixed_weights", tuple(self.fixed_weights))
        if not isinstance(self.learnable_weights, bool):
            raise TypeError(f"learnable_weights must be a bool; got {self.learnable_weights!r}")
        check_choice("weight_sharing", self.weight_sharing, WEIGHT_SHARINGS)
        check_choice("weight_initialization", self.weight_initialization, WEIGHT_INITIALIZATIONS)
        weights = self.fixed_weights
        if weights is None:
            return
        if self.learnable_weights:
            raise ValueError(
                f"fixed_weights={list(weights)!r} is only used with learnable_weights=False; "
                "set learnable_weights=False or drop fixed_weights"
            )
        numbers = isinstance(weights, tuple) and all(
            isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights
        )
        if not numbers or not weights or not sum(weights) > 0:
            raise ValueError(f"fixed_weights must be non-negative numbers with a positive sum; got {weights!r}")

    def check_adapter_count(self, count: int) -> None:
        if self.fixed_weights is not None and len(self.fixed_weights) != count:
            raise ValueError(
                f"fixed_weights has {len(self.fixed_weights)} weights for {count} adapters; give one per adapter"
            )


class WeightedFusion(FusionLayer):
    """``h + sum_i w_i up_i`` with one weight per adapter.

    Args:
        hidden_size: ``d``.
        num_adapters: ``N``.
        logits: a ``[N]`` parameter to use (the builder passes the same one to every point for shared
            weights); a new one, initialised by ``initialization``, when ``None``.
        learnable: learn ``logits``; otherwise use ``fixed_weights`` (a buffer).
        initialization: ``"uniform"`` (zero logits) or ``"normal"`` (``N(0, 0.02)`` logits).
        fixed_weights: ``N`` non-negative weights (normalised to sum 1); ``None`` = uniform.
        temperature: ``w = softmax(logits / T)`` (no effect on fixed weights).
        learnable_weights, weight_initialization: the documented names of ``learnable`` and ``initialization``;
            the documented call ``WeightedFusion(num_adapters, ...)`` (no hidden size) fuses adapter outputs.
    """

    logits: nn.Parameter
    fixed_weights: torch.Tensor
    mixing_parameters = ("logits",)

    def __init__(
        self,
        hidden_size: int | None,
        num_adapters: int | None = None,
        *,
        logits: nn.Parameter | None = None,
        learnable: bool | None = None,
        initialization: str | None = None,
        fixed_weights: Sequence[float] | None = None,
        temperature: float = 1.0,
        learnable_weights: bool | None = None,
        weight_initialization: str | None = None,
    ) -> None:
        if num_adapters is None:  # the documented WeightedFusion(num_adapters, ...): no hidden size needed
            hidden_size, num_adapters = None, hidden_size
        learnable = one_of("learnable", learnable, "learnable_weights", learnable_weights, True)
        initialization = one_of("initialization", initialization, "weight_initialization", weight_initialization,
                                "uniform")  # fmt: skip
        super().__init__(hidden_size, num_adapters, temperature)  # type: ignore[arg-type]
        self.learnable = learnable
        if learnable:
            if fixed_weights is not None:
                raise ValueError("fixed_weights is only used with learnable weights off (learnable_weights=False)")
            if logits is None:
                logits = nn.Parameter(torch.empty(num_adapters))
                init_logits_(logits, initialization)
            if tuple(logits.shape) != (num_adapters,):
                raise ValueError(f"logits must have shape ({num_adapters},); got {tuple(logits.shape)}")
            self.logits = logits
        else:
            weights = (
                torch.ones(num_adapters) if fixed_weights is None else torch.tensor(fixed_weights, dtype=torch.float)
            )
            if tuple(weights.shape) != (num_adapters,) or (weights < 0).any() or not weights.sum() > 0:
                raise ValueError(
                    f"fixed_weights must be {num_adapters} non-negative numbers with a positive sum; "
                    f"got {fixed_weights!r}"
                )
            self.register_buffer("fixed_weights", weights / weights.sum())

    def mixing_weights(self) -> torch.Tensor:
        """The current weights over adapters, ``[N]``, summing to 1."""
        if self.learnable:
            return torch.softmax(self.select(self.logits) / self.temperature, dim=-1)
        weights = self.select(self.fixed_weights)
        return weights if self.adapter_subset is None else weights / weights.sum()

    def _products(self, pack: AdapterPack) -> Products:
        w = self.mixing_weights()
        return {
            "weights": w,
            "up_weight": pack.scale(pack.up_weight(), w),  # [d, R]: column block i scaled by w_i
            "up_bias": pack.up_bias_columns() @ w,  # [d]
            "extra_weight": w.new_zeros(0, pack.hidden_size),
        }

    def _mix(
        self, activations: torch.Tensor, extra: torch.Tensor, pack: AdapterPack, products: Products
    ) -> tuple[torch.Tensor, torch.Tensor]:
        delta = F.linear(activations, products["up_weight"], products["up_bias"])
        return delta, products["weights"].expand(activations.shape[0], pack.n)


def init_logits_(logits: torch.Tensor, initialization: str) -> None:
    if initialization == "uniform":
        nn.init.zeros_(logits)
    elif initialization == "normal":
        nn.init.normal_(logits, std=0.02)
    else:
        raise ValueError(f"weight_initialization must be one of {WEIGHT_INITIALIZATIONS}; got {initialization!r}")


def reference_weighted(
    layer: WeightedFusion,
    hidden: torch.Tensor,
    adapters: Sequence[BottleneckAdapter | LoraAdapter],
    ffn_input: torch.Tensor | None = None,
    *,
    reads_ffn_input: Sequence[bool] | None = None,
    residual: bool = True,
    module_input: torch.Tensor | None = None,
) -> FusionOutput:
    """Run every adapter, then weight and sum. For tests and benchmarks."""
    ups = reference_contributions(hidden, adapters, ffn_input, reads_ffn_input, module_input)  # [..., N, d]
    w = torch.softmax(layer.logits / layer.temperature, -1) if layer.learnable else layer.fixed_weights
    mixed = (w.unsqueeze(-1) * ups).sum(-2)
    out = hidden + mixed if residual else mixed
    return FusionOutput(out, w.expand(*hidden.shape[:-1], len(adapters)))


def build_weighted(config: FusionConfig, point: FusionPoint, shared: dict[str, Any]) -> WeightedFusion:
    settings = config.settings_of(WeightedFusionConfig)
    fixed = None
    if settings.fixed_weights is not None:
        fixed = [settings.fixed_weights[i] for i in point.adapter_indices]
    logits = None
    if settings.learnable_weights and settings.weight_sharing == "shared":
        if point.num_adapters != point.num_fused:
            raise ValueError(
                f"weight_sharing='shared' needs every fused adapter at every fused point, but point {point.key!r} "
                f"holds {point.num_adapters} of {point.num_fused}; use weight_sharing='per_layer'"
            )
        if "logits" not in shared:
            shared["logits"] = nn.Parameter(torch.empty(point.num_fused))
            init_logits_(shared["logits"], settings.weight_initialization)
        logits = shared["logits"]
    return WeightedFusion(
        point.hidden_size,
        point.num_adapters,
        logits=logits,
        learnable=settings.learnable_weights,
        initialization=settings.weight_initialization,
        fixed_weights=fixed,
        temperature=config.temperature,
    )


FUSION_METHODS.register(
    "weighted",
    FusionMethod(
        layer_class=WeightedFusion,
        build=build_weighted,
        reference=reference_weighted,
        config_class=WeightedFusionConfig,
        single_adapter_identity={},
        description="a softmax-normalised weight per adapter (per layer or shared), or fixed weights",
    ),
)
