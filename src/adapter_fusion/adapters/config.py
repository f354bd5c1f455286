"""Configuration of a bottleneck adapter (Houlsby et al. 2019; Pfeiffer et al. 2021; He et al. 2022)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from adapter_fusion.config import JsonConfig, check_choice, check_positive, check_probability, field_aliases

ACTIVATIONS = ("relu", "gelu", "silu", "swish", "tanh")
PLACEMENTS = ("pfeiffer", "houlsby", "parallel")
SEQUENTIAL_PLACEMENTS = ("pfeiffer", "houlsby")  # adapters that read the sub-layer output (not its input)
INITIALIZATIONS = ("near_identity", "bert")
DEFAULT_REDUCTION_FACTOR = 16.0


@field_aliases(adapter_dropout="dropout", adapter_activation="activation", use_residual="residual")
@dataclasses.dataclass(frozen=True)
class AdapterConfig(JsonConfig):
    """A bottleneck adapter: ``h + scaling * up(activation(down(h)))`` inserted into every chosen layer."""

    config_type: ClassVar[str] = "bottleneck_adapter"

    bottleneck_size: int | None = None
    """Width of the bottleneck. When unset it is ``hidden_size // reduction_factor``."""
    reduction_factor: float = DEFAULT_REDUCTION_FACTOR
    """Hidden size divided by the bottleneck width (used when ``bottleneck_size`` is unset)."""
    activation: str = "relu"
    """Non-linearity inside the bottleneck: relu, gelu, silu, swish or tanh."""
    dropout: float = 0.0
    """Dropout applied to the bottleneck activations during training."""
    placement: str = "pfeiffer"
    """Where adapters go: 'pfeiffer' (after the feed-forward block; by default the AdapterFusion paper's adapter,
    see original_ln_before), 'houlsby' (after the attention and the feed-forward blocks) or 'parallel' (beside the
    feed-forward block, reading its input)."""
    original_ln_before: bool | None = None
    """Sequential placements: before the adapter, add the sub-layer's residual input to its output and apply the
    sub-layer's own LayerNorm (none in pre-LN decoders), so the adapter reads the normalised sum; the sub-layer's
    residual add and LayerNorm still follow the adapter. This is the AdapterFusion paper's adapter and AdapterHub's
    SeqBnConfig. Unset: True for 'pfeiffer', False for 'houlsby' (AdapterHub's DoubleSeqBnConfig) and 'parallel'.
    Adapters saved before this field existed load with False, the function they were trained with."""
    residual_before_ln: bool | str = True
    """Sequential placements: the residual the adapter's output is added to. True: the sub-layer output before the
    residual add and LayerNorm; 'post_add': the sum after the residual add, before the LayerNorm (needs
    original_ln_before); False: the adapter's own input. As AdapterHub defines it; True in all its presets."""
    residual: bool = True
    """Add the residual (see residual_before_ln) to the adapter's output (sequential placements). Without it the
    adapter replaces the sub-layer output."""
    scaling: float = 1.0
    """Multiplier on the adapter's contribution (parallel adapters often use 4.0)."""
    initialization: str = "near_identity"
    """'near_identity': small random down-projection and zero up-projection, so a new adapter leaves the model
    unchanged; 'bert': both projections drawn from N(0, 0.02)."""
    layers: tuple[int, ...] | None = None
    """Indices of the transformer layers that get an adapter; all layers when unset."""

    def __post_init__(self) -> None:
        if self.bottleneck_size is not None:
            check_positive("bottleneck_size", self.bottleneck_size, integer=True)
        check_positive("reduction_factor", self.reduction_factor)
        if self.bottleneck_size is not None and self.reduction_factor != DEFAULT_REDUCTION_FACTOR:
            raise ValueError(
                f"give bottleneck_size or reduction_factor, not both: bottleneck_size={self.bottleneck_size} would "
                f"ignore reduction_factor={self.reduction_factor}"
            )
        check_choice("activation", self.activation, ACTIVATIONS)
        check_probability("dropout", self.dropout)
        check_choice("placement", self.placement, PLACEMENTS)
        if self.original_ln_before is None:
            object.__setattr__(self, "original_ln_before", self.placement == "pfeiffer")
        if not isinstance(self.original_ln_before, bool):
            raise TypeError(f"original_ln_before must be a bool or None; got {self.original_ln_before!r}")
        if not (isinstance(self.residual_before_ln, bool) or self.residual_before_ln == "post_add"):
            raise ValueError(f"residual_before_ln must be True, False or 'post_add'; got {self.residual_before_ln!r}")
        if self.placement == "parallel" and (self.original_ln_before or self.residual_before_ln is not True):
            raise ValueError(
                "original_ln_before and residual_before_ln apply to sequential placements ('pfeiffer', 'houlsby'); "
                f"got original_ln_before={self.original_ln_before!r}, residual_before_ln="
                f"{self.residual_before_ln!r} with placement='parallel'"
            )
        if self.residual_before_ln == "post_add" and not self.original_ln_before:
            raise ValueError(
                "residual_before_ln='post_add' takes the residual after the sub-layer's residual add, which only "
                "happens before the adapter with original_ln_before=True; got original_ln_before=False"
            )
        if not isinstance(self.residual, bool):
            raise TypeError(f"residual must be a bool; got {self.residual!r}")
        check_positive("scaling", self.scaling)
        check_choice("initialization", self.initialization, INITIALIZATIONS)
        if self.placement == "parallel" and not self.residual:
            raise ValueError(
                "residual=False does not apply to placement='parallel': a parallel adapter always adds to the "
                "feed-forward output; use a sequential placement ('pfeiffer', 'houlsby') or drop residual"
            )
        if self.layers is not None:
            if isinstance(self.layers, list):
                object.__setattr__(self, "layers", tuple(self.layers))
            layers = self.layers
            if (
                not isinstance(layers, tuple)
                or not layers
                or not all(isinstance(i, int) and not isinstance(i, bool) for i in layers)
            ):
                raise ValueError(f"layers must be a non-empty sequence of layer indices or None; got {layers!r}")
            if len(set(layers)) != len(layers):
                raise ValueError(f"layers must be distinct; got {list(layers)}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdapterConfig:
        if isinstance(data, dict) and "library_version" in data and "original_ln_before" not in data:
            # written by a version before the field existed: every adapter then ran without the LayerNorm before
            data = {**data, "original_ln_before": False}
        return super().from_dict(data)

    def replace(self, **changes: Any) -> AdapterConfig:
        """A copy with ``changes``; a new ``placement`` without ``original_ln_before`` takes that placement's
        default for it."""
        if "placement" in changes and "original_ln_before" not in changes:
            changes["original_ln_before"] = None
        return super().replace(**changes)

    def bottleneck_for(self, hidden_size: int) -> int:
        """The bottleneck width for a model of ``hidden_size``; a reduction factor that leaves less than one unit
        is refused (never clamped)."""
        if self.bottleneck_size is not None:
            return self.bottleneck_size
        size = int(hidden_size // self.reduction_factor)
        if size < 1:
            raise ValueError(
                f"reduction_factor={self.reduction_factor} gives a bottleneck of {hidden_size} / "
                f"{self.reduction_factor} < 1 unit for hidden size {hidden_size}; allowed: reduction_factor in "
                f"(0, {hidden_size}] (or set bottleneck_size)"
            )
        return size

    def get_adapter_size(self, hidden_size: int) -> int:
        """The bottleneck width for a model of ``hidden_size`` (the documented name of ``bottleneck_for``)."""
        return self.bottleneck_for(hidden_size)

    def locations(self) -> tuple[str, ...]:
        """The sub-layer locations this adapter occupies in each layer."""
        return ("attention", "ffn") if self.placement == "houlsby" else ("ffn",)
