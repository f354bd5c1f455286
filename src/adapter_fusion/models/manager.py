"""Several named adapters on one Hugging Face model, attached with forward hooks (no patched code).

The manager owns the adapters; the base model only carries hook handles, so its state-dict keys never change
and ``detach()`` gives back a bit-identical base model.

Adapter points: every layer has two, the attention and feed-forward sub-layer outputs (``"attention"``,
``"ffn"``), where bottleneck adapters sit. A LoRA adapter adds points at the linear layers it adapts: the output
hook of such a linear layer adds ``scaling * B A x`` for its input ``x``. A LoRA on the attention-output or FFN-output
linear layer shares the ``"attention"`` / ``"ffn"`` point with bottleneck adapters (both change that tensor).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from adapter_fusion.adapters import (
    AdapterConfig,
    AnyAdapterConfig,
    BottleneckAdapter,
    LoraAdapter,
    LoraConfig,
    adapter_kind,
    num_parameters,
)
from adapter_fusion.models import detached, points
from adapter_fusion.models.points import LOCATIONS, point_key, split_point_key
from adapter_fusion.models.specs import (
    ArchitectureSpec,
    hidden_size_of,
    layer_modules,
    spec_for,
)

# A composition replaces the default "stack the active adapters" rule at one adapter point:
# (manager, layer index, location, sub-layer output [batch, seq, hidden], ffn input or None) -> new output.
# While it runs, ``manager.module_input`` is the input of the hooked linear layer (what LoRA adapters read).
Composition = Callable[["AdapterManager", int, str, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


class AdapterManager(nn.Module):
    """Add, remove, activate, freeze and disable named adapters (bottleneck or LoRA) on one model.

    The documented form ``AdapterManager(adapter_names)`` (or ``AdapterManager.from_adapter_paths(...)``) holds
    bottleneck adapters without a model ("detached"): load them (``load_adapter_from_path``), run them on a hidden
    state (``manager(hidden_states)`` -> ``{name: output}``), then hand the manager to ``FusionModel(...,
    adapter_manager=manager)``, which attaches them to its base model.
    """

    def __init__(
        self,
        model: nn.Module | Sequence[str] | None = None,
        spec: ArchitectureSpec | None = None,
        *,
        hidden_size: int | None = None,
        num_layers: int | None = None,
    ) -> None:
        super().__init__()
        self.declared_names: tuple[str, ...] = ()
        self.base_model_name: str | None = None
        if model is None or not isinstance(model, nn.Module):  # detached: adapters without a model
            self.declared_names = tuple(_flatten([model or ()]))
            self.spec, self.hidden_size, self.num_layers = spec, hidden_size, num_layers  # type: ignore[assignment]
            self.model_type: str | None = None
        else:
            self.spec = spec or spec_for(model)
            self.hidden_size = hidden_size_of(model, self.spec)
            self.num_layers = len(layer_modules(model, self.spec))
            self.model_type = str(model.config.model_type)
        self.adapters = nn.ModuleDict()
        self.configs: dict[str, AnyAdapterConfig] = {}
        self._active: tuple[str, ...] = ()
        self._disabled = False
        self.composition: Composition | None = None
        self._ffn_inputs: dict[int, torch.Tensor] = {}
        self._module_input: torch.Tensor | None = None
        self._residual_inputs: dict[str, torch.Tensor] = {}  # point key -> the sub-layer's residual input
        self._point_residual: tuple[str, torch.Tensor] | None = None  # the one in use while a point's hook runs
        self._norms: dict[str, nn.Module | None] = {}  # point key -> the sub-layer's LayerNorm (None: pre-LN)
        # location -> path of its module inside a layer; LoRA adds the linear layers it adapts
        self._point_paths: dict[str, str] = (
            {"attention": self.spec.attention_output, "ffn": self.spec.ffn_output} if self.spec is not None else {}
        )
        self._hooked: set[str] = set()
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._base_ref = [model if isinstance(model, nn.Module) else None]  # not a submodule of the manager
        self.attach()

    # ----------------------------------------------------------------- hooks
    @property
    def base_model(self) -> nn.Module:
        return self._base_ref[0]

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def attach(self) -> None:
        """Register the forward hooks on every layer (idempotent; nothing to do without a model)."""
        if self._handles or self.base_model is None:
            return
        for index, layer in enumerate(layer_modules(self.base_model, self.spec)):
            ffn_in = layer.get_submodule(self.spec.ffn_input)
            self._handles.append(ffn_in.register_forward_pre_hook(self._capture_hook(index)))
            self._attach_residual_hooks(index, layer)
        self._hook_points()

    def _hook_points(self) -> None:
        """An output hook on every point not hooked yet: both sub-layer outputs of every layer, and every linear
        layer a LoRA adapter adapts."""
        keys = {point_key(i, location) for i in range(self.num_layers) for location in LOCATIONS}
        for modules in self.adapters.values():
            keys.update(modules.keys())
        layers = layer_modules(self.base_model, self.spec)
        for key in sorted(keys - self._hooked):
            layer, location = split_point_key(key)
            module = layers[layer].get_submodule(self._point_paths[location])
            self._handles.append(module.register_forward_hook(self._output_hook(layer, location)))
            self._hooked.add(key)

    def detach(self) -> None:
        """Remove every hook: the base model computes exactly as before attaching."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._hooked.clear()
        self._ffn_inputs.clear()
        self._residual_inputs.clear()

    @property
    def module_input(self) -> torch.Tensor | None:
        """The input of the module whose output hook is running (a LoRA adapter's input); ``None`` outside."""
        return self._module_input

    def _capture_hook(self, layer: int) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            if self._needs_ffn_input() and args:
                self._ffn_inputs[layer] = args[0]

        return hook

    def _attach_residual_hooks(self, index: int, layer: nn.Module) -> None:
        """Capture each sub-layer's residual input (the layer's input; ``spec.ffn_residual``'s for the feed-forward
        block) and find its LayerNorm, for adapters with ``original_ln_before``."""
        sources = [("attention", layer)]
        if self.spec.ffn_residual is not None:
            sources.append(("ffn", layer.get_submodule(self.spec.ffn_residual)))
        for location, module in sources:
            hook = self._residual_hook(point_key(index, location))
            self._handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
        for location, norm in (("attention", self.spec.attention_norm), ("ffn", self.spec.ffn_norm)):
            self._norms[point_key(index, location)] = layer.get_submodule(norm) if norm else None

    def _residual_hook(self, key: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if self._needs_residual_input():
                first = args[0] if args else kwargs.get("hidden_states")
                if isinstance(first, torch.Tensor):
                    self._residual_inputs[key] = first

        return hook

    def _output_hook(self, layer: int, location: str) -> Callable[..., Any]:
        key = point_key(layer, location)

        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
            if self._disabled or (not self._active and self.composition is None):
                return None
            ffn_input = self._ffn_inputs.pop(layer, None) if location == "ffn" else None
            self._module_input = args[0] if args else None
            residual = self._residual_inputs.pop(key, None)
            self._point_residual = (key, residual) if residual is not None else None
            try:
                if self.composition is not None:
                    return self.composition(self, layer, location, output, ffn_input)
                return self.apply_stack(self._active, layer, location, output, ffn_input)
            finally:
                self._module_input = None
                self._point_residual = None

        return hook

    def _needs_residual_input(self) -> bool:
        if self._disabled:
            return False
        if self.composition is not None:
            return True
        return any(getattr(self.configs[name], "original_ln_before", False) for name in self._active)

    def _needs_ffn_input(self) -> bool:
        if self._disabled:
            return False
        if self.composition is not None:
            return True
        return any(getattr(self.configs[name], "placement", None) == "parallel" for name in self._active)

    def apply_adapter(
        self, name: str, layer: int, location: str, hidden: torch.Tensor, ffn_input: torch.Tensor | None
    ) -> torch.Tensor:
        """One adapter at one point: ``[batch, seq, hidden] -> [batch, seq, hidden]`` (unchanged if absent)."""
        adapter = self.adapter_module(name, layer, location)
        if adapter is None:
            return hidden
        if isinstance(adapter, LoraAdapter):
            if self._module_input is None:
                raise RuntimeError(f"LoRA adapter {name!r} found no input of its linear layer at {layer}_{location}")
            return adapter(self._module_input).add_(hidden)
        config = self.configs[name]
        assert isinstance(config, AdapterConfig)
        if config.placement == "parallel":
            if ffn_input is None:
                raise RuntimeError(f"parallel adapter {name!r} found no captured feed-forward input in layer {layer}")
            return adapter(ffn_input).add_(hidden)
        return self.bottleneck_output(adapter, config, *self.adapter_input(config, layer, location, hidden))

    @staticmethod
    def bottleneck_output(
        adapter: BottleneckAdapter, config: AdapterConfig, source: torch.Tensor, residual: torch.Tensor
    ) -> torch.Tensor:
        """A sequential bottleneck adapter's output: ``adapter(source)``, plus ``residual`` if ``config.residual``."""
        if config.residual:
            # in place on the adapter's fresh output (its up-projection's backward needs no output): one
            # [batch, seq, hidden] buffer fewer per adapter point than ``residual + delta``, the same values
            return adapter(source).add_(residual)
        return adapter(source)

    def adapter_input(
        self, config: AdapterConfig, layer: int, location: str, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(what a sequential adapter reads, the residual its output is added to)`` at one point, both
        ``[batch, seq, hidden]``, as AdapterHub's ``pre_forward`` computes them from the sub-layer output ``hidden``.

        Without ``original_ln_before`` both are ``hidden``. With it the adapter reads ``norm(hidden + x)`` (``x``
        the sub-layer's residual input, ``norm`` its LayerNorm; no norm in pre-LN decoders) and the residual is
        ``hidden`` (``residual_before_ln=True``), ``hidden + x`` ('post_add') or the adapter's input (False).
        """
        if not config.original_ln_before:
            return hidden, hidden
        key = point_key(layer, location)
        current = self._point_residual
        if current is None or current[0] != key:
            raise RuntimeError(
                f"no residual input captured at point {key!r} for an adapter with original_ln_before=True: apply it "
                "inside the model's forward pass"
            )
        summed = hidden + current[1]
        norm = self._norms.get(key)
        source = norm(summed) if norm is not None else summed
        if config.residual_before_ln is True:
            return source, hidden
        return source, summed if config.residual_before_ln == "post_add" else source

    def apply_stack(
        self, names: Sequence[str], layer: int, location: str, hidden: torch.Tensor, ffn_input: torch.Tensor | None
    ) -> torch.Tensor:
        """Apply several adapters one after the other (the ``Stack`` composition)."""
        for name in names:
            hidden = self.apply_adapter(name, layer, location, hidden, ffn_input)
        return hidden

    # ----------------------------------------------------------------- adapters
    def adapter_module(self, name: str, layer: int, location: str) -> BottleneckAdapter | LoraAdapter | None:
        modules = self.adapters[name]
        key = point_key(layer, location)
        return modules[key] if key in modules else None  # type: ignore[return-value]  # noqa: SIM401

    def point_locations(self, layer: int, names: Iterable[str] | None = None) -> list[str]:
        """The locations in ``layer`` where any of ``names`` (default: every adapter) has a module, in the order
        the layer runs them (modules in definition order)."""
        names = self.list_adapters() if names is None else list(names)
        present = {loc for name in names for loc in self._point_paths if self.adapter_module(name, layer, loc)}
        module_paths = layer_modules(self.base_model, self.spec)[layer].named_modules()
        order = {path: i for i, (path, _) in enumerate(module_paths)}
        return sorted(present, key=lambda loc: order.get(self._point_paths[loc], len(order)))

    def add_adapter(self, name: str, config: AnyAdapterConfig | None = None, *, activate: bool = True) -> None:
        """Create a new adapter ``name`` (identity at start: a zero up-projection / a zero LoRA ``B``) in every
        configured layer; ``config`` is an ``AdapterConfig`` (bottleneck) or a ``LoraConfig``."""
        config = config if config is not None else AdapterConfig()
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"adapter name must be a non-empty string without dots; got {name!r}")
        if name in self.adapters:
            raise ValueError(f"an adapter named {name!r} already exists; existing: {self.list_adapters()}")
        kind = adapter_kind(config)  # TypeError for anything but an adapter config
        if self.hidden_size is None or self.num_layers is None or (kind == "lora" and self.base_model is None):
            raise ValueError(
                f"this manager has no model, so adapter {name!r} has no geometry: load bottleneck adapters with "
                "load_adapter_from_path, or give AdapterManager(names, hidden_size=..., num_layers=...)"
            )
        layers = config.layers if config.layers is not None else tuple(range(self.num_layers))
        bad = [i for i in layers if not 0 <= i < self.num_layers]
        if bad:
            raise ValueError(f"adapter layers {bad} out of range: the model has layers 0..{self.num_layers - 1}")
        if kind == "lora":
            assert isinstance(config, LoraConfig)
            modules, paths = points.build_lora(self, config, layers)
        else:
            assert isinstance(config, AdapterConfig)
            if config.original_ln_before and self.spec is not None and self.spec.ffn_residual is None:
                raise ValueError(
                    f"original_ln_before=True needs the feed-forward residual input, which the {self.spec.family!r} "
                    "spec does not name (ArchitectureSpec.ffn_residual); use original_ln_before=False"
                )
            modules, paths = points.build_bottleneck(self, config, layers), {}
        reference = next(self.base_model.parameters()) if self.base_model is not None else torch.zeros(())
        modules.to(device=reference.device, dtype=reference.dtype if reference.is_floating_point() else None)
        modules.train(self.training)
        self._point_paths.update(paths)
        self.adapters[name] = modules
        self.configs[name] = config
        if self.attached:
            self._hook_points()
        if activate:
            self.set_active(name)

    # ----------------------------------------------------------------- the documented detached form
    from_adapter_paths = classmethod(detached.from_adapter_paths)
    load_adapter_from_path = detached.load_adapter_from_path
    forward = detached.run_adapters

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
