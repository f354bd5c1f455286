"""``Fuse``: the composition that runs a fusion at every fused adapter point of an ``AdapterManager``.

Set as ``manager.composition`` (``add_fusion`` does it), it replaces the "stack the active adapters" rule: at a
fused point it fuses the adapters present there; everywhere else it returns the sub-layer output unchanged.

Why non-fusion layers apply no adapter (rather than stacking or averaging them): each adapter was trained
alone, so stacking N of them feeds every later layer a sum it never saw, and averaging is itself a fixed
fusion (``fusion_method="weighted"`` with ``learnable_weights=False`` expresses it explicitly). Skipping keeps
``fusion_layers`` a clean ablation knob: ``fusion_layers=()`` is exactly the base model.

Because ``manager.composition`` is an ``nn.Module`` attribute of the manager, the fusion's weights are part of
the model (``adapters.composition.layers.<layer>_<location>.*``): they move with ``.to()``, follow
``train()``/``eval()``, and the trainer finds them by module type (``FusionLayer``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from adapter_fusion.adapters import BottleneckAdapter, LoraAdapter
from adapter_fusion.adapters.config import SEQUENTIAL_PLACEMENTS
from adapter_fusion.fusion.base import FusionLayer
from adapter_fusion.fusion.config import FusionConfig
from adapter_fusion.fusion.registry import FUSION_METHODS, FusionPoint, MethodConfig
from adapter_fusion.models.manager import AdapterManager
from adapter_fusion.models.points import point_key
from adapter_fusion.models.saving import load_adapter

if TYPE_CHECKING:
    from adapter_fusion.models.model import AdapterModel


class Fuse(nn.Module):
    """A fusion over named adapters: one ``FusionLayer`` per fused adapter point.

    Call signature (``manager.composition``): ``(manager, layer, location, hidden, ffn_input) -> hidden``.

    Analysis (opt-in, no second pass): with ``collect_weights = True`` (or inside ``record_weights()``),
    every forward stores each fused point's weights over adapters in ``last_weights[point key]``
    (``[batch, seq, n_adapters]``, or ``[batch, seq, heads, n_adapters]`` for multi-head attention), still
    attached to the graph so they can enter a loss; detach them to keep.
    """

    def __init__(
        self,
        name: str,
        adapter_names: Sequence[str],
        layers: Mapping[str, FusionLayer],
        point_adapters: Mapping[str, Sequence[str]],
        config: FusionConfig | None = None,
    ) -> None:
        super().__init__()
        if set(layers) != set(point_adapters):
            raise ValueError(
                f"layers and point_adapters must have the same keys; got {sorted(layers)} and {sorted(point_adapters)}"
            )
        self.name = name
        self.adapter_names = tuple(adapter_names)
        self.layers = nn.ModuleDict(dict(layers))
        self.point_adapters = {key: tuple(names) for key, names in point_adapters.items()}
        self.config = config
        self.collect_weights = False
        self.last_weights: dict[str, torch.Tensor] = {}
        self.active_subset: frozenset[str] | None = None

    def forward(
        self,
        manager: AdapterManager,
        layer: int,
        location: str,
        hidden: torch.Tensor,
        ffn_input: torch.Tensor | None,
    ) -> torch.Tensor:
        """Fuse at ``(layer, location)``; unchanged ``hidden`` ``[batch, seq, d]`` at points that don't fuse."""
        key = point_key(layer, location)
        if key not in self.layers:
            return hidden
        names = self.point_adapters[key]
        layer_module = cast(FusionLayer, self.layers[key])
        subset = None
        if self.active_subset is not None:  # an ablation: fuse only these adapters (the softmax over them alone)
            subset = tuple(i for i, name in enumerate(names) if name in self.active_subset)
            if not subset:
                return hidden
            names = tuple(names[i] for i in subset)
        adapters = []
        for name in names:
            module = manager.adapter_module(name, layer, location) if name in manager else None
            if module is None:
                raise KeyError(
                    f"fusion {self.name!r} fuses adapter {name!r} at point {key!r}, but the model has no such "
                    f"adapter there; adapters: {manager.list_adapters()}"
                )
            adapters.append(module)
        reads_ffn_input, residual = point_inputs(manager, names)
        # the query and the sequential adapters' input, and the residual (both ``hidden`` unless the adapters
        # apply the sub-layer's LayerNorm first: AdapterHub's Pfeiffer adapters, whose fusion queries the normed sum)
        source, residual_input = fusion_input(manager, names, layer, location, hidden)
        layer_module.adapter_subset = subset
        try:
            output = layer_module(
                source,
                adapters,
                ffn_input,
                reads_ffn_input=reads_ffn_input,
                residual=residual and source is residual_input,
                return_weights=self.collect_weights,
                module_input=manager.module_input,
            )
        finally:
            layer_module.adapter_subset = None
        if self.collect_weights and output.weights is not None:
            self.last_weights[key] = output.weights
        if residual and source is not residual_input:
            return output.hidden + residual_input
        return output.hidden

    def fusion_layers(self) -> dict[str, FusionLayer]:
        """The fusion layer of every fused point, by point key (``"3_ffn"``)."""
        return {key: cast(FusionLayer, layer) for key, layer in self.layers.items()}

    @contextmanager
    def restricted(self, adapter_names: Sequence[str] | None) -> Iterator[None]:
        """Run only ``adapter_names`` (a non-empty subset of the fused adapters) inside the block, e.g. for an
        ablation: each method's weights are taken over those adapters alone (attention: the softmax over their
        scores; weighted: the softmax over their logits; gating: their gates). None: all adapters."""
        previous = self.active_subset
        if adapter_names is not None:
            names = list(adapter_names)
            unknown = [name for name in names if name not in self.adapter_names]
            if not names or unknown or len(set(names)) != len(names):
                raise ValueError(
                    f"adapter_names must be distinct names among the adapters fusion {self.name!r} fuses "
                    f"{list(self.adapter_names)}; got {names}"
                )
            self.active_subset = frozenset(names)
        try:
            yield
        finally:
            self.active_subset = previous

    @contextmanager
    def record_weights(self) -> Iterator[dict[str, torch.Tensor]]:
        """``with fuse.record_weights() as weights: model(...)`` fills ``weights`` (``last_weights``)."""
        previous = self.collect_weights
        self.collect_weights = True
        self.last_weights.clear()
        try:
            yield self.last_weights
        finally:
            self.collect_weights = previous

    def regularization_loss(self) -> torch.Tensor:
        """Sum of every fusion layer's regulariser (attention: ``lambda * ||I - V||_F^2`` per layer)."""
        losses = [layer.regularization_loss() for layer in self.fusion_layers().values()]
        if not losses:
            return torch.zeros(())
        return torch.stack(losses).sum()

    def set_temperature(self, temperature: float) -> None:
        """Set every layer's softmax temperature (the trainer's schedule; forward never changes it)."""
        for layer in self.fusion_layers().values():
            layer.set_temperature(temperature)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, adapters={list(self.adapter_names)}"


def point_inputs(manager: AdapterManager, names: Sequence[str]) -> tuple[tuple[bool, ...], bool]:
    """Per adapter whether it reads the feed-forward input, and the shared residual flag (mixed -> ValueError)."""
    configs = [manager.configs[name] for name in names]
    # a LoRA adapter (no placement) reads its linear layer's input and always adds to the layer's output
    placements = [getattr(config, "placement", None) for config in configs]
    reads = tuple(placement == "parallel" for placement in placements)
    residuals = {
        name: placement in (None, "parallel") or config.residual
        for name, config, placement in zip(names, configs, placements)
    }
    if len(set(residuals.values())) > 1:
        raise ValueError(
            "fused adapters must agree on residual (parallel adapters always add the residual); got "
            + ", ".join(f"{name}: residual={flag}" for name, flag in residuals.items())
        )
    return reads, next(iter(residuals.values()))


def sequential_input_mode(manager: AdapterManager, names: Sequence[str]) -> tuple[bool, bool | str]:
    """``(original_ln_before, residual_before_ln)`` shared by the sequential adapters among ``names`` (they read
    one input: the fusion's query); adapters that disagree raise ``ValueError``."""
    modes = {
        name: (config.original_ln_before, config.residual_before_ln)
        for name in names
        if getattr(config := manager.configs[name], "placement", None) in SEQUENTIAL_PLACEMENTS
    }
    if len(set(modes.values())) > 1:
        raise ValueError(
            "fused sequential adapters must agree on original_ln_before and residual_before_ln (they share the "
            "fusion's query); got "
            + ", ".join(f"{name}: {mode[0]!r}, {mode[1]!r}" for name, mode in modes.items())
            + "; train the adapters to fuse with one AdapterConfig(original_ln_before=..., residual_before_ln=...)"
        )
    return next(iter(modes.values()), (False, True))


def fusion_input(
    manager: AdapterManager, names: Sequence[str], layer: int, location: str, hidden: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(query and sequential adapters' input, residual)`` at one fused point (see ``adapter_input``)."""
    original_ln_before, residual_before_ln = sequential_input_mode(manager, names)
    if not original_ln_before:
        return hidden, hidden
    config = next(
        c for name in names if getattr(c := manager.configs[name], "placement", None) in SEQUENTIAL_PLACEMENTS
    )
    return manager.adapter_input(config, layer, location, hidden)  # type: ignore[arg-type]


def build_fusion(config: FusionConfig, manager: AdapterManager, adapter_names: Sequence[str] | None = None) -> Fuse:
    """Build (not attach) a ``Fuse`` for ``manager`` from ``config``.

    ``adapter_names`` overrides ``config.adapter_names``. Raises ``ValueError``/``KeyError`` naming the bad value:
    no adapters, an unknown or repeated adapter name, mixed residual flags, adapters of another hidden size,
    fusion layers out of range or holding none of the adapters, wrong number of fixed weights; the method's
    module raises for its own settings (e.g. attention heads that don't divide the hidden size).
    """
    if not isinstance(config, FusionConfig):
        raise TypeError(f"config must be a FusionConfig; got {type(config).__name__}")
    names = tuple(adapter_names) if adapter_names is not None else config.adapter_names
    if not names:
        raise ValueError(
            "a fusion needs at least one adapter; got adapter_names=() (set adapter_names or adapter_paths)"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"adapter names must be distinct; got {list(names)}")
    missing = [name for name in names if name not in manager]
    if missing:
        raise KeyError(f"no adapter named {missing[0]!r} in the model; available: {manager.list_adapters() or 'none'}")
    for name in names:
        for key, module in manager.adapters[name].named_children():
            if isinstance(module, BottleneckAdapter) and module.hidden_size != manager.hidden_size:
                raise ValueError(
                    f"adapter {name!r} at point {key!r} has hidden size {module.hidden_size}; the model and the "
                    f"fusion have {manager.hidden_size}"
                )
    point_inputs(manager, names)  # mixed residual flags -> ValueError
    sequential_input_mode(manager, names)  # mixed LayerNorm-before settings -> ValueError
    config.settings_of(MethodConfig).check_adapter_count(len(names))  # e.g. one fixed weight per adapter
    if config.fusion_layers is None:
        layer_indices: Sequence[int] = range(manager.num_layers)
    else:
        layer_indices = config.fusion_layers
        bad = [i for i in layer_indices if not 0 <= i < manager.num_layers]
        if bad:
            raise ValueError(f"fusion_layers holds {bad}; the model has layers 0..{manager.num_layers - 1}")

    method = FUSION_METHODS.get(config.fusion_method)
    shared: dict[str, Any] = {}
    layers: dict[str, FusionLayer] = {}
    point_adapters: dict[str, tuple[str, ...]] = {}
    for layer in layer_indices:
        found = False
        for location in manager.point_locations(layer, names):
            modules = [manager.adapter_module(name, layer, location) for name in names]
            present = [i for i, module in enumerate(modules) if module is not None]
            found = True
            key = point_key(layer, location)
            point = FusionPoint(key, output_width(modules[present[0]]), tuple(present), len(names))
            layers[key] = method.build(config, point, shared)
            point_adapters[key] = tuple(names[i] for i in present)
        if not found and config.fusion_layers is not None:
            raise ValueError(
                f"fusion layer {layer} holds none of the adapters {list(names)}; drop it from fusion_layers"
            )
    fuse = Fuse(config.name, names, layers, point_adapters, config)
    reference = next(manager.base_model.parameters(), None)
    if reference is not None:
        fuse.to(device=reference.device, dtype=reference.dtype if reference.is_floating_point() else None)
    fuse.train(manager.training)
    return fuse


def output_width(module: nn.Module) -> int:
    """The width of what an adapter adds to: the hidden size, or a LoRA's linear layer's output size."""
    return int(module.out_features if isinstance(module, LoraAdapter) else module.hidden_size)


def _manager_of(target: AdapterModel | AdapterManager) -> AdapterManager:
    manager = target if isinstance(target, AdapterManager) else getattr(target, "adapters", None)
    if not isinstance(manager, AdapterManager):
        raise TypeError(f"expected an AdapterModel or AdapterManager; got {type(target).__name__}")
    return manager


def load_fusion_adapters(model: AdapterModel, config: FusionConfig, **load_options: bool) -> tuple[str, ...]:
    """Load ``config.adapter_paths`` into ``model`` (inactive, without heads); returns their names in order.
    ``load_options``: ``allow_modified`` / ``allow_other_base`` of ``load_adapter``."""
    names = []
    for index, path in enumerate(config.adapter_paths):
        name = config.adapter_names[index] if config.adapter_names else None
        names.append(load_adapter(model, path, name, load_head=False, activate=False, **load_options))
    return tuple(names)


def add_fusion(
    target: AdapterModel | AdapterManager, config: FusionConfig, *, activate: bool = True, **load_options: bool
) -> Fuse:
    """Build the fusion ``config`` describes (loading ``adapter_paths`` first, with ``load_options``) and make it
    the composition."""
    manager = _manager_of(target)
    names = config.adapter_names
    if config.adapter_paths:
        if isinstance(target, AdapterManager):
            raise TypeError("loading adapter_paths needs the AdapterModel, not its AdapterManager")
        names = load_fusion_adapters(target, config, **load_options)
    fuse = build_fusion(config, manager, names)
    if activate:
        manager.composition = fuse
    return fuse


def remove_fusion(target: AdapterModel | AdapterManager) -> None:
    """Drop the composition: the manager goes back to stacking its active adapters."""
    manager = _manager_of(target)
    # Unregister the child module too, so that a plain function can be set as composition afterwards
    # (nn.Module refuses a non-module value for a name it holds as a submodule, even a None one).
    delattr(manager, "composition")
    manager.composition = None


def train_fusion(target: AdapterModel | AdapterManager, fuse: Fuse, *, freeze_adapters: bool | None = None) -> None:
    """Make ``fuse``'s weights trainable; freeze (or unfreeze) its adapters (default: its config's
    ``freeze_adapters_during_fusion``, else frozen). Heads and the base model are the caller's business."""
    manager = _manager_of(target)
    if freeze_adapters is None:
        freeze_adapters = fuse.config.freeze_adapters_during_fusion if fuse.config is not None else True
    for parameter in fuse.parameters():
        parameter.requires_grad_(True)
    for name in fuse.adapter_names:
        manager.freeze(name, frozen=freeze_adapters)
