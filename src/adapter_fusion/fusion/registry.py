"""The registry of fusion methods: each method's module registers one ``FusionMethod`` under its name.

Adding a method = one module (a ``FusionLayer`` subclass, a ``MethodConfig`` dataclass of its settings, a
builder, a plain reference implementation) that calls ``FUSION_METHODS.register`` and is imported in
``fusion/__init__.py``, plus its test row. ``FusionConfig`` takes the method's settings as keywords and the CLI
offers them as flags, both from the registry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from adapter_fusion.adapters import LoraAdapter
from adapter_fusion.config import JsonConfig
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


@dataclasses.dataclass(frozen=True)
class MethodConfig(JsonConfig):
    """Base of a fusion method's own settings: one frozen dataclass per method, registered with it; each field
    has a docstring (the CLI help) and ``__post_init__`` validates it."""

    config_type: ClassVar[str] = "fusion_method"

    def check_adapter_count(self, count: int) -> None:
        """Refuse settings that cannot work with ``count`` fused adapters (e.g. more fixed weights)."""


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
    config_class: type[MethodConfig] = MethodConfig
    """The method's settings; ``FusionConfig(fusion_method=name, **settings)`` builds one (``.settings``)."""
    single_adapter_identity: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Config overrides under which fusing one adapter, at initialisation, equals that adapter alone."""
    dense: bool = True
    """Every adapter runs on every token, as in the reference (so in training their dropout masks are drawn
    like the reference's); False for methods that run only some adapters (sparse top-k)."""
    description: str = ""

    @property
    def config_fields(self) -> tuple[str, ...]:
        """The settings only this method reads (its config's fields): another method refuses them."""
        return tuple(f.name for f in dataclasses.fields(self.config_class))


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
