"""Several named adapters on one Hugging Face model, attached with forward hooks (no patched code).

The manager owns the adapters; the base model only carries hook handles, so its state-dict keys never change
and ``detach()`` gives back a bit-identical base model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from adapter_fusion.adapters import AdapterConfig, BottleneckAdapter, num_parameters
from adapter_fusion.models.specs import ArchitectureSpec, hidden_size_of, layer_modules, spec_for

LOCATIONS = ("attention", "ffn")

# A composition replaces the default "stack the active adapters" rule at one adapter point:
# (manager, layer index, location, sub-layer output [batch, seq, hidden], ffn input or None) -> new output.
Composition = Callable[["AdapterManager", int, str, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


def point_key(layer: int, location: str) -> str:
    return f"{layer}_{location}"


class AdapterManager(nn.Module):
    """Add, remove, activate, freeze and disable named bottleneck adapters on one model."""

    def __init__(self, model: nn.Module, spec: ArchitectureSpec | None = None) -> None:
        super().__init__()
        self.spec = spec or spec_for(model)
        self.hidden_size = hidden_size_of(model, self.spec)
        self.num_layers = len(layer_modules(model, self.spec))
        self.model_type = str(model.config.model_type)
        self.adapters = nn.ModuleDict()
        self.configs: dict[str, AdapterConfig] = {}
        self._active: tuple[str, ...] = ()
        self._disabled = False
        self.composition: Composition | None = None
        self._ffn_inputs: dict[int, torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._base_ref = [model]  # a plain reference: the base model is not a submodule of the manager
        self.attach()

    # ----------------------------------------------------------------- hooks
    @property
    def base_model(self) -> nn.Module:
        return self._base_ref[0]

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def attach(self) -> None:
        """Register the forward hooks on every layer (idempotent)."""
        if self._handles:
            return
        for index, layer in enumerate(layer_modules(self.base_model, self.spec)):
            ffn_in = layer.get_submodule(self.spec.ffn_input)
            self._handles.append(ffn_in.register_forward_pre_hook(self._capture_hook(index)))
            for location, path in (("attention", self.spec.attention_output), ("ffn", self.spec.ffn_output)):
                module = layer.get_submodule(path)
                self._handles.append(module.register_forward_hook(self._output_hook(index, location)))

    def detach(self) -> None:
        """Remove every hook: the base model computes exactly as before attaching."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._ffn_inputs.clear()

    def _capture_hook(self, layer: int) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            if self._needs_ffn_input() and args:
                self._ffn_inputs[layer] = args[0]

        return hook

    def _output_hook(self, layer: int, location: str) -> Callable[..., Any]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
            if self._disabled or (not self._active and self.composition is None):
                return None
            ffn_input = self._ffn_inputs.pop(layer, None) if location == "ffn" else None
            if self.composition is not None:
                return self.composition(self, layer, location, output, ffn_input)
            return self.apply_stack(self._active, layer, location, output, ffn_input)

        return hook

    def _needs_ffn_input(self) -> bool:
        if self._disabled:
            return False
        if self.composition is not None:
            return True
        return any(self.configs[name].placement == "parallel" for name in self._active)

    def apply_adapter(
        self, name: str, layer: int, location: str, hidden: torch.Tensor, ffn_input: torch.Tensor | None
    ) -> torch.Tensor:
        """One adapter at one point: ``[batch, seq, hidden] -> [batch, seq, hidden]`` (unchanged if absent)."""
        adapter = self.adapter_module(name, layer, location)
        if adapter is None:
            return hidden
        config = self.configs[name]
        if config.placement == "parallel":
            if ffn_input is None:
                raise RuntimeError(f"parallel adapter {name!r} found no captured feed-forward input in layer {layer}")
            return adapter(ffn_input).add_(hidden)
        if config.residual:
            # in place on the adapter's fresh output (its up-projection's backward needs no output): one
            # [batch, seq, hidden] buffer fewer per adapter point than ``hidden + delta``, the same values
            return adapter(hidden).add_(hidden)
        return adapter(hidden)

    def apply_stack(
        self, names: Sequence[str], layer: int, location: str, hidden: torch.Tensor, ffn_input: torch.Tensor | None
    ) -> torch.Tensor:
        """Apply several adapters one after the other (the ``Stack`` composition)."""
        for name in names:
            hidden = self.apply_adapter(name, layer, location, hidden, ffn_input)
        return hidden

    # ----------------------------------------------------------------- adapters
    def adapter_module(self, name: str, layer: int, location: str) -> BottleneckAdapter | None:
        modules = self.adapters[name]
        key = point_key(layer, location)
        return modules[key] if key in modules else None  # type: ignore[return-value]  # noqa: SIM401

    def add_adapter(self, name: str, config: AdapterConfig | None = None, *, activate: bool = True) -> None:
        """Create a new adapter ``name`` (near-identity at start) in every configured layer."""
        config = config or AdapterConfig()
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"adapter name must be a non-empty string without dots; got {name!r}")
        if name in self.adapters:
            raise ValueError(f"an adapter named {name!r} already exists; existing: {self.list_adapters()}")
        if not isinstance(config, AdapterConfig):
            raise TypeError(f"config must be an AdapterConfig; got {type(config).__name__}")
        layers = config.layers if config.layers is not None else tuple(range(self.num_layers))
        bad = [i for i in layers if not 0 <= i < self.num_layers]
        if bad:
            raise ValueError(f"adapter layers {bad} out of range: the model has layers 0..{self.num_layers - 1}")
        reference = next(self.base_model.parameters())
        modules = nn.ModuleDict()
        for layer in layers:
            for location in config.locations():
                modules[point_key(layer, location)] = BottleneckAdapter(
                    self.hidden_size,
                    config.bottleneck_for(self.hidden_size),
                    activation=config.activation,
                    dropout=config.dropout,
                    scaling=config.scaling,
                    initialization=config.initialization,
                )
        modules.to(device=reference.device, dtype=reference.dtype if reference.is_floating_point() else None)
        modules.train(self.training)
        self.adapters[name] = modules
        self.configs[name] = config
        if activate:
            self.set_active(name)

    def remove_adapter(self, name: str) -> None:
        self._check_names([name])
        del self.adapters[name]
        del self.configs[name]
        self._active = tuple(n for n in self._active if n != name)

    def list_adapters(self) -> list[str]:
        return list(self.adapters.keys())

    def __contains__(self, name: object) -> bool:
        return name in self.adapters

    @property
    def active(self) -> tuple[str, ...]:
        return self._active

    def set_active(self, *names: str) -> None:
        """Activate these adapters (stacked in the given order); no names deactivates all."""
        flat = _flatten(names)
        self._check_names(flat)
        self._active = tuple(flat)

    @contextmanager
    def using(self, names: Iterable[str] | str | None) -> Iterator[None]:
        """Temporarily activate ``names`` (``[]`` runs the bare base model)."""
        previous = self._active
        self.set_active(*_flatten([names] if names is not None else []))
        try:
            yield
        finally:
            self._active = previous

    @contextmanager
    def disable(self) -> Iterator[None]:
        """Run the base model exactly as if no adapter were attached."""
        previous = self._disabled
        self._disabled = True
        try:
            yield
        finally:
            self._disabled = previous

    def freeze(self, name: str, frozen: bool = True) -> None:
        self._check_names([name])
        for parameter in self.adapters[name].parameters():
            parameter.requires_grad_(not frozen)

    def unfreeze(self, name: str) -> None:
        self.freeze(name, frozen=False)

    def num_parameters(self, name: str) -> int:
        self._check_names([name])
        return num_parameters(self.adapters[name])

    def parameter_counts(self) -> dict[str, int]:
        return {name: num_parameters(modules) for name, modules in self.adapters.items()}

    def adapter_state_dict(self, name: str) -> dict[str, torch.Tensor]:
        self._check_names([name])
        return {k: v.detach() for k, v in self.adapters[name].state_dict().items()}

    def _check_names(self, names: Iterable[str]) -> None:
        missing = [n for n in names if n not in self.adapters]
        if missing:
            raise KeyError(f"no adapter named {missing[0]!r}; available: {self.list_adapters() or 'none'}")


def _flatten(names: Iterable[Any]) -> list[str]:
    flat: list[str] = []
    for item in names:
        if item is None:
            continue
        if isinstance(item, str):
            flat.append(item)
        else:
            flat.extend(_flatten(item))
    return flat
