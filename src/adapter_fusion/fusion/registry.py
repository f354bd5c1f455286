"""The registry of fusion methods: each method's module registers one ``FusionMethod`` under its name.

Adding a method = one module (a ``FusionLayer`` subclass, a builder, a plain reference implementation) that
calls ``FUSION_METHODS.register`` and is imported in ``fusion/__init__.py``, plus its test row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from adapter_fusion.adapters import LoraAdapter
from adapter_fusion.registry import Registry

if TYPE_CHECKING:
    from adapter_fusion.adapters import BottleneckAdapter, LoraAdapter
    from adapter_fusion.fusion.base import FusionLayer, FusionOutput
    from adapter_fusion.fusion.config import FusionConfig


@dataclasses.dataclass(frozen=True)
class FusionPoint:
    """What a builder needs to know about one adapter point it builds a fusion layer for."""

    key: str
    """The point's key, e.g. ``"3_ffn"``."""
    hidden_size: int
    """Width of the sub-layer output."""
    adapter_indices: tuple[int, ...]
    """Positions (in the fusion's adapter list) of the adapters present at this point."""
    num_fused: int
    """How many adapters the whole fusion fuses (a point may hold fewer)."""

    @property
    def num_adapters(self) -> int:
        return len(self.adapter_indices)


# (config, point, state shared by the layers of one fusion) -> the point's fusion layer
Builder = Callable[["FusionConfig", FusionPoint, dict[str, Any]], "FusionLayer"]
# (layer, hidden, adapters, ffn_input, reads_ffn_input=..., residual=..., module_input=...) -> FusionOutput
Reference = Callable[..., "FusionOutput"]


@dataclasses.dataclass(frozen=True)
class FusionMethod:
    """A registered fusion method."""

    layer_class: type[FusionLayer]
    """The per-point module."""
    build: Builder
    """Maps a ``FusionConfig`` to the module for one point (configs never reach into modules)."""
    reference: Reference
    """A plain loop over adapters computing the same maths (AdapterHub style), for tests and benchmarks."""
    single_adapter_identity: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Config overrides under which fusing one adapter, at initialisation, equals that adapter alone."""
    config_fields: tuple[str, ...] = ()
    """``FusionConfig`` fields that only this method reads: setting one with another method is an error."""
    dense: bool = True
    """Every adapter runs on every token, as in the reference (so in training their dropout masks are drawn
    like the reference's); False for methods that run only some adapters (sparse top-k)."""
    description: str = ""


FUSION_METHODS: Registry[FusionMethod] = Registry("fusion method")


def reference_contributions(
    hidden: torch.Tensor,
    adapters: Sequence[BottleneckAdapter | LoraAdapter],
    ffn_input: torch.Tensor | None,
    reads_ffn_input: Sequence[bool] | None,
    module_input: torch.Tensor | None = None,
) -> torch.Tensor:
    """Each adapter's contribution ``up_i`` run one by one, stacked: ``[..., N, hidden]`` (for references).
    A LoRA adapter reads ``module_input`` (the input of the linear layer it adapts)."""
    reads = list(reads_ffn_input) if reads_ffn_input is not None else [False] * len(adapters)
    ups = []
    for adapter, reads_ffn in zip(adapters, reads):
        source = module_input if isinstance(adapter, LoraAdapter) else ffn_input if reads_ffn else hidden
        if source is None:
            raise ValueError("a parallel adapter needs ffn_input and a LoRA adapter module_input")
        ups.append(adapter(source))
    return torch.stack(ups, dim=-2)
