"""Configuration of an adapter fusion (Pfeiffer et al., EACL 2021, https://arxiv.org/abs/2005.00247)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from adapter_fusion.config import JsonConfig, check_choice, check_positive, field_aliases
from adapter_fusion.fusion.attention import VALUE_INITIALIZATIONS
from adapter_fusion.fusion.gating import GATE_ACTIVATIONS
from adapter_fusion.fusion.registry import FUSION_METHODS
from adapter_fusion.fusion.sparse import ROUTINGS
from adapter_fusion.fusion.weighted import WEIGHT_INITIALIZATIONS

WEIGHT_SHARINGS = ("per_layer", "shared")


@field_aliases(fusion_dropout="attention_dropout")
@dataclasses.dataclass(frozen=True)
class FusionConfig(JsonConfig):
    """A fusion of trained adapters: which adapters, which method, in which layers, and the method's settings.

    ``fusion_dropout`` is accepted as another name of ``attention_dropout`` (the dropout on the weights over
    adapters)."""

    config_type: ClassVar[str] = "fusion"

    adapter_paths: tuple[str, ...] = ()
    """Directories of saved adapters to load and fuse (named by adapter_names when given, else by their saved
    names)."""
    adapter_names: tuple[str, ...] = ()
    """Names of the adapters to fuse, in order (adapters already in the model, or the names to load
    adapter_paths under)."""
    fusion_method: str = "attention"
    """How adapters are combined: 'attention' (AdapterFusion), 'weighted' (a weight per adapter), 'gating'
    (per-token gates) or 'sparse' (top-k routing: only k adapters are computed per token or example)."""
    name: str = "fusion"
    """Name of the fusion (used in file names and logs)."""
    fusion_layers: tuple[int, ...] | None = None
    """Indices of the transformer layers that fuse; all layers when unset. In other layers the fused adapters
    are not applied (an empty tuple gives the base model)."""
    num_attention_heads: int = 1
    """Attention fusion: number of heads, each with its own softmax over adapters (1 in the paper). Must divide
    the hidden size."""
    attention_dropout: float = 0.1
    """Attention fusion: dropout on the attention probabilities during training."""
    value_initialization: str = "identity"
    """Attention fusion: 'identity' (the value matrix starts as the identity) or 'random' (N(0, 0.02))."""
    value_regularization: float = 0.01
    """Attention fusion: weight of ||I - V||_F^2 summed over layers, added to the training loss (0 disables)."""
    temperature: float = 1.0
    """Initial softmax temperature of the fusion weights."""
    temperature_min: float = 1.0
    """Lowest temperature the schedule goes down to."""
    temperature_decay: float = 0.0
    """Amount the trainer lowers the temperature by per optimizer step, down to temperature_min (0: constant)."""
    learnable_weights: bool = True
    """Weighted fusion: learn the weights; otherwise use fixed_weights."""
    weight_sharing: str = "per_layer"
    """Weighted fusion: 'per_layer' (weights per fused point) or 'shared' (one set for every layer)."""
    weight_initialization: str = "uniform"
    """Weighted fusion: 'uniform' (equal weights at start) or 'normal' (logits drawn from N(0, 0.02))."""
    fixed_weights: tuple[float, ...] | None = None
    """Weighted fusion with learnable_weights off: one non-negative weight per adapter (normalised to sum 1);
    uniform when unset."""
    gate_activation: str = "sigmoid"
    """Gating fusion: 'sigmoid' (independent gates in (0, 1)) or 'softmax' (gates sum to 1)."""
    gate_bias: bool = True
    """Gating fusion: learn a bias of the gates."""
    freeze_adapters_during_fusion: bool = True
    """Keep the fused adapters' weights fixed while the fusion trains."""
    top_k: int = 2
    """Sparse fusion: how many adapters each token (or example) uses, at most the number of fused adapters; only
    those are computed."""
    routing: str = "token"
    """Sparse fusion: 'token' (each token picks its adapters) or 'example' (each sequence picks them at its first
    position, the [CLS] token of encoders; faster, but not for causal LMs generating with a KV cache)."""
    load_balancing: float = 0.01
    """Sparse fusion: weight of the Switch load-balancing loss added to the training loss (0 disables)."""

    def __post_init__(self) -> None:
        for field in ("adapter_paths", "adapter_names", "fusion_layers", "fixed_weights"):
            value = getattr(self, field)
            if isinstance(value, list):
                object.__setattr__(self, field, tuple(value))
        for field in ("adapter_paths", "adapter_names"):
            value = getattr(self, field)
            if not isinstance(value, tuple) or not all(isinstance(v, str) and v for v in value):
                raise ValueError(f"{field} must be a sequence of non-empty strings; got {value!r}")
        if self.adapter_paths and self.adapter_names and len(self.adapter_paths) != len(self.adapter_names):
            raise ValueError(
                f"adapter_names ({len(self.adapter_names)} names: {list(self.adapter_names)}) must name every one of "
                f"the {len(self.adapter_paths)} adapter_paths, or be empty"
            )
        if len(set(self.adapter_names)) != len(self.adapter_names):
            raise ValueError(f"adapter_names must be distinct; got {list(self.adapter_names)}")
        check_choice("fusion_method", self.fusion_method, FUSION_METHODS.names())
        if not isinstance(self.name, str) or not self.name or "." in self.name:
            raise ValueError(f"name must be a non-empty string without dots; got {self.name!r}")
        if self.fusion_layers is not None:
            layers = self.fusion_layers
            if not isinstance(layers, tuple) or not all(_is_int(i) and i >= 0 for i in layers):
                raise ValueError(f"fusion_layers must be a sequence of layer indices >= 0, or None; got {layers!r}")
            if len(set(layers)) != len(layers):
                raise ValueError(f"fusion_layers must be distinct; got {list(layers)}")
        check_positive("num_attention_heads", self.num_attention_heads, integer=True)
        if (
            isinstance(self.attention_dropout, bool)
            or not isinstance(self.attention_dropout, (int, float))
            or not (0.0 <= self.attention_dropout < 1.0)
        ):
            raise ValueError(f"attention_dropout must be a number in [0, 1); got {self.attention_dropout!r}")
        check_choice("value_initialization", self.value_initialization, VALUE_INITIALIZATIONS)
        check_positive("value_regularization", self.value_regularization, allow_zero=True)
        check_positive("temperature", self.temperature)
        check_positive("temperature_min", self.temperature_min)
        check_positive("temperature_decay", self.temperature_decay, allow_zero=True)
        if self.temperature_min > self.temperature:
            raise ValueError(
                f"temperature_min must be <= temperature; got temperature_min={self.temperature_min!r} "
                f"and temperature={self.temperature!r}"
            )
        for field in ("learnable_weights", "gate_bias", "freeze_adapters_during_fusion"):
            if not isinstance(getattr(self, field), bool):
                raise TypeError(f"{field} must be a bool; got {getattr(self, field)!r}")
        check_choice("weight_sharing", self.weight_sharing, WEIGHT_SHARINGS)
        check_choice("weight_initialization", self.weight_initialization, WEIGHT_INITIALIZATIONS)
        if self.fixed_weights is not None:
            weights = self.fixed_weights
            if self.learnable_weights:
                raise ValueError(
                    f"fixed_weights={list(weights)!r} is only used with learnable_weights=False; "
                    "set learnable_weights=False or drop fixed_weights"
                )
            if (
                not isinstance(weights, tuple)
                or not weights
                or not all(_is_number(w) and w >= 0 for w in weights)
                or not sum(weights) > 0
            ):
                raise ValueError(f"fixed_weights must be non-negative numbers with a positive sum; got {weights!r}")
            count = len(self.adapter_names) or len(self.adapter_paths)
            if count and len(weights) != count:
                raise ValueError(
                    f"fixed_weights has {len(weights)} weights for {count} adapters; give one per adapter"
                )
        check_choice("gate_activation", self.gate_activation, GATE_ACTIVATIONS)
        check_positive("top_k", self.top_k, integer=True)
        count = len(self.adapter_names) or len(self.adapter_paths)
        if self.fusion_method == "sparse" and count and self.top_k > count:
            raise ValueError(f"top_k={self.top_k} exceeds the {count} fused adapters; use top_k <= {count}")
        check_choice("routing", self.routing, ROUTINGS)
        check_positive("load_balancing", self.load_balancing, allow_zero=True)

    def inapplicable_fields(self) -> dict[str, str]:
        """Fields that only another fusion method reads (from each method's ``config_fields``), with why."""
        chosen = FUSION_METHODS.get(self.fusion_method).config_fields
        return {
            field: f"only fusion_method={name!r} reads it; got fusion_method={self.fusion_method!r}"
            for name, method in FUSION_METHODS.items()
            for field in method.config_fields
            if field not in chosen
        }

    def temperature_at(self, step: int) -> float:
        """The scheduled temperature after ``step`` optimizer steps: ``max(temperature - decay * step, min)``."""
        return max(self.temperature - self.temperature_decay * step, self.temperature_min)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
