"""Base class of fusion layers: every fusion method's per-layer module derives from ``FusionLayer``.

A fusion layer combines N adapters at one adapter point (one transformer layer, one location). It owns only
the fusion weights; the adapters are passed to ``forward`` (they live in the ``AdapterManager``).

Every method follows the same fast, exact recipe (see ``fusion/packing.py``):

1. ``_products(pack)``: weight products that need no token data (packed adapter weights folded with the
   fusion weights), including ``extra_weight`` / ``extra_bias``: rows the method wants applied to the
   sub-layer output ``h`` (attention query/score rows, gate rows);
2. one matmul of ``h`` with ``[down-projections; extra rows]`` gives every adapter's bottleneck
   pre-activations and the method's per-token terms at once (a second matmul when parallel adapters read the
   feed-forward input);
3. ``_mix``: the method's weights over adapters, and one matmul of ``[w (x) a, w]`` with folded up columns.

The products are recomputed every forward in training (the weights change); in eval mode, when no graph is
needed, they are memoised keyed by the identity, storage and ``_version`` counter of every weight involved,
so generation with batch 1 doesn't redo ``hidden^2``-sized work per step. The memo is not state: it never
changes what ``forward`` returns, and it is dropped on copy and pickling.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Hashable, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from adapter_fusion.adapters import BottleneckAdapter, LoraAdapter
from adapter_fusion.fusion.packing import AdapterPack
from adapter_fusion.fusion.registry import FUSION_METHODS

Products = dict[str, torch.Tensor]


class FusionOutput(NamedTuple):
    hidden: torch.Tensor
    """The fused sub-layer output, ``[batch, seq, hidden]``."""
    weights: torch.Tensor | None
    """The weights over adapters when asked for: ``[batch, seq, n_adapters]`` (``[batch, seq, heads,
    n_adapters]`` for multi-head attention fusion); ``None`` otherwise."""


class ProductCache:
    """A one-entry memo of weight products, keyed by the weights' identity, storage and version counters."""

    def __init__(self) -> None:
        self._entry: tuple[list[weakref.ref], tuple[Hashable, ...], Products] | None = None
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(tensors: Sequence[torch.Tensor], static: tuple[Hashable, ...]) -> tuple[Hashable, ...] | None:
        if any(t.is_inference() for t in tensors):
            return None  # inference tensors have no version counter: never memoise them
        return (static, tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in tensors))

    def get(self, tensors: Sequence[torch.Tensor], key: tuple[Hashable, ...]) -> Products | None:
        if self._entry is None:
            return None
        refs, stored_key, products = self._entry
        if stored_key != key or len(refs) != len(tensors) or any(r() is not t for r, t in zip(refs, tensors)):
            return None
        return products

    def put(self, tensors: Sequence[torch.Tensor], key: tuple[Hashable, ...], products: Products) -> None:
        self._entry = ([weakref.ref(t) for t in tensors], key, products)

    def clear(self) -> None:
        self._entry = None

    def __deepcopy__(self, memo: dict[int, Any]) -> ProductCache:
        return ProductCache()

    def __getstate__(self) -> dict[str, Any]:
        return {"_entry": None, "hits": 0, "misses": 0}


class FusionLayer(nn.Module):
    """Combines the outputs of several adapters at one adapter point (one layer, one location).

    Args:
        hidden_size: width ``d`` of the sub-layer output.
        num_adapters: number ``N`` of adapters fused at this point.
        temperature: initial softmax temperature (every method divides its logits by it).

    Capabilities, read by the shared tests and the analysis code:
        ``num_heads``: weights are ``[batch, seq, N]`` when 1, ``[batch, seq, heads, N]`` otherwise;
        ``normalized``: the weights over adapters sum to 1 (in eval mode);
        ``mixing_parameters``: names of this layer's own parameters that are input-independent mixing weights (one
        number per adapter), trained at ``TrainingConfig.fusion_weight_learning_rate``.
    """

    num_heads: int = 1
    mixing_parameters: tuple[str, ...] = ()

    def __init__(self, hidden_size: int | None, num_adapters: int, temperature: float = 1.0) -> None:
        super().__init__()
        if (hidden_size is not None and hidden_size <= 0) or num_adapters <= 0:
            raise ValueError(f"hidden_size and num_adapters must be > 0; got {hidden_size} and {num_adapters}")
        self.hidden_size = hidden_size
        self.num_adapters = num_adapters
        self.temperature = 1.0
        self.set_temperature(temperature)
        self._products_cache = ProductCache()
        self.adapter_subset: tuple[int, ...] | None = None
        """Positions of the adapters a call fuses when only some run (an ablation; set by ``Fuse.restricted``, not
        by ``forward``); None: all ``num_adapters``."""

    def select(self, tensor: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """The entries (along ``dim``) of a per-adapter parameter for the adapters this call fuses."""
        if self.adapter_subset is None:
            return tensor
        return tensor.index_select(dim, torch.tensor(self.adapter_subset, device=tensor.device))

    @property
    def normalized(self) -> bool:
        """Whether the weights over adapters sum to 1 (before attention dropout)."""
        return True

    def set_temperature(self, temperature: float) -> None:
        """Set the softmax temperature (the trainer's schedule calls this; ``forward`` never does)."""
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"temperature must be a number > 0; got {temperature!r}")
        self.temperature = float(temperature)

    def regularization_loss(self) -> torch.Tensor:
        """This layer's term of the training loss (0 unless the method regularises)."""
        for tensor in itertools.chain(self.parameters(), self.buffers()):
            return tensor.new_zeros(())
        return torch.zeros(())

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        hidden: torch.Tensor,
        adapters: Sequence[BottleneckAdapter | LoraAdapter] | Sequence[torch.Tensor] | torch.Tensor,
        ffn_input: torch.Tensor | None = None,
        *,
        reads_ffn_input: Sequence[bool] | None = None,
        residual: bool = True,
        return_weights: bool = False,
        module_input: torch.Tensor | None = None,
    ) -> Any:
        """Fuse ``adapters`` at one point.

        For LoRA adapters the point is a linear layer they adapt (or a sub-layer output whose linear layer they
        adapt): ``hidden`` is that linear layer's output ``W x + b``, each LoRA's contribution is
        ``up_i = s_i B_i A_i x`` for the layer's input ``x`` (``module_input``), and the method mixes these
        per-module deltas exactly as it mixes bottleneck adapters' ``up_i`` (the same query, gates and weights).

        The stand-alone form ``layer(hidden_states, adapter_outputs)``, with each adapter's output already
        computed (a list of ``[batch, seq, hidden]`` tensors, or one ``[batch, seq, N, hidden]``, each the adapter's
        output on ``hidden_states`` with the residual ``hidden_states`` included, as ``AdapterManager(...)(h)``
        gives them), runs the method's plain reference maths on the contributions ``output_i - h`` and returns the
        fused tensor (a ``FusionOutput`` with ``return_weights``).

        Args:
            hidden: the sub-layer output ``h``, ``[batch, seq, hidden]`` (also the fusion query).
            adapters: the N adapters at this point, in fusion order.
            ffn_input: the feed-forward block's input ``[batch, seq, hidden]``, read by adapters flagged in
                ``reads_ffn_input`` (parallel placement).
            reads_ffn_input: per adapter, whether its down-projection reads ``ffn_input`` instead of ``h``.
            residual: add ``h`` to the fused output (``False`` for adapters built with ``residual=False``).
            return_weights: also return the weights over adapters.
            module_input: the adapted linear layer's input ``[batch, seq, in]``, read by LoRA adapters.
        """
        if isinstance(adapters, torch.Tensor) or (adapters and isinstance(adapters[0], torch.Tensor)):
            return self._fuse_outputs(hidden, adapters, residual, return_weights)  # type: ignore[arg-type]
        pack = self.checked_pack(hidden, adapters, ffn_input, reads_ffn_input, module_input)  # type: ignore[arg-type]
        lead = hidden.shape[:-1]
        h = hidden.reshape(-1, self.hidden_size)
        x = ffn_input.reshape(-1, self.hidden_size) if pack.any_reads_ffn_input and ffn_input is not None else None
        m = module_input.reshape(-1, module_input.shape[-1]) if module_input is not None else None

        products = self._cached_products(pack)
        if pack.all_read_hidden:
            # One matmul of h: every down-projection and the method's per-token rows.
            rows = F.linear(h, products["hidden_weight"], products["hidden_bias"])
            pre, extra = rows[:, : pack.total], rows[:, pack.total :]
        else:
            pre = pack.down(h, x, m, products)
            extra_weight = products["extra_weight"]
            extra = F.linear(h, extra_weight, products.get("extra_bias")) if len(extra_weight) else h[:, :0]
        activations = pack.activate(pre)
        delta, weights = self._mix(activations, extra, pack, products)
        out = delta.reshape(hidden.shape)
        if residual:
            out = hidden + out
        if not return_weights:
            return FusionOutput(out, None)
        return FusionOutput(out, weights.reshape(*lead, *weights.shape[1:]))

    def checked_pack(
        self,
        hidden: torch.Tensor,
        adapters: Sequence[BottleneckAdapter | LoraAdapter],
        ffn_input: torch.Tensor | None,
        reads_ffn_input: Sequence[bool] | None,
        module_input: torch.Tensor | None = None,
    ) -> AdapterPack:
        """The ``AdapterPack`` of ``adapters``, after checking their count and the shapes of the inputs."""
        if self.hidden_size is None:
            raise ValueError(f"{type(self).__name__} was built without a hidden size; it fuses adapter outputs only")
        pack = AdapterPack(adapters, reads_ffn_input, self.hidden_size)
        expected = self.num_adapters if self.adapter_subset is None else len(self.adapter_subset)
        if pack.n != expected:
            raise ValueError(f"this fusion layer fuses {expected} adapters; got {pack.n}")
        if hidden.shape[-1] != self.hidden_size:
            raise ValueError(f"hidden must be [..., {self.hidden_size}]; got shape {tuple(hidden.shape)}")
        if pack.any_reads_ffn_input and (ffn_input is None or ffn_input.shape != hidden.shape):
            got = None if ffn_input is None else tuple(ffn_input.shape)
            raise ValueError(f"parallel adapters need ffn_input shaped like hidden {tuple(hidden.shape)}; got {got}")
        lead = hidden.shape[:-1]
        if pack.any_reads_module_input and (
            module_input is None or module_input.shape != (*lead, pack.module_input_size)
        ):
            got = None if module_input is None else tuple(module_input.shape)
            raise ValueError(f"LoRA adapters need module_input of shape {(*lead, pack.module_input_size)}; got {got}")
        return pack

    def _fuse_outputs(
        self, hidden: torch.Tensor, outputs: Sequence[torch.Tensor] | torch.Tensor, residual: bool, weights: bool
    ) -> Any:
        """The stand-alone form: the registered method's reference maths on given adapter outputs."""
        if not isinstance(outputs, torch.Tensor):
            shapes = {tuple(o.shape) for o in outputs}
            if shapes != {tuple(hidden.shape)}:
                raise ValueError(f"adapter outputs must each be shaped like hidden_states {tuple(hidden.shape)}; got "
                                 f"{[tuple(o.shape) for o in outputs]}")  # fmt: skip
            outputs = torch.stack(list(outputs), dim=-2)
        stacked = outputs
        if stacked.shape[:-2] != hidden.shape[:-1] or stacked.shape[-1] != hidden.shape[-1]:
            raise ValueError(f"stacked adapter outputs must be [..., N, hidden] around hidden_states "
                             f"{tuple(hidden.shape)}; got {tuple(stacked.shape)}")  # fmt: skip
        if stacked.shape[-2] != self.num_adapters:
            raise ValueError(f"this fusion layer fuses {self.num_adapters} adapters; got {stacked.shape[-2]} outputs")
        method = next((m for _, m in FUSION_METHODS.items() if type(self) is m.layer_class), None)
        if method is None:
            raise TypeError(f"{type(self).__name__} is not a registered fusion method's layer")
        contributions = stacked - hidden.unsqueeze(-2)
        given = [_Given(contributions[..., i, :]) for i in range(self.num_adapters)]
        result = method.reference(self, hidden, given, residual=residual)
        return result if weights else result.hidden

    # ------------------------------------------------------------------ for subclasses
    def _products(self, pack: AdapterPack) -> Products:
        """Token-free weight products; must include ``extra_weight`` ``[E, hidden]`` (E may be 0)."""
        raise NotImplementedError

    def _mix(
        self, activations: torch.Tensor, extra: torch.Tensor, pack: AdapterPack, products: Products
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``a [T, R]``, ``extra [T, E]`` -> ``(delta [T, hidden], weights [T, N] or [T, heads, N])``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ memo of the products
    def _all_products(self, pack: AdapterPack) -> Products:
        products = self._products(pack)
        extra_weight = products["extra_weight"]
        extra_bias = products.get("extra_bias")
        if extra_bias is None and extra_weight.shape[0] > 0:
            extra_bias = extra_weight.new_zeros(extra_weight.shape[0])
        if pack.all_read_hidden:
            down_weight, down_bias = pack.down_weight()
            if extra_weight.shape[0] == 0:
                products["hidden_weight"], products["hidden_bias"] = down_weight, down_bias
            else:
                products["hidden_weight"] = torch.cat([down_weight, extra_weight])
                products["hidden_bias"] = torch.cat([down_bias, extra_bias])  # type: ignore[list-item]
        else:
            products.update(pack.down_products())
            if extra_bias is not None:
                products["extra_bias"] = extra_bias
        return products

    def _cached_products(self, pack: AdapterPack) -> Products:
        tensors = pack.tensors() + list(self.parameters()) + list(self.buffers())
        needs_graph = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
        if self.training or needs_graph:
            return self._all_products(pack)
        static: tuple[Hashable, ...] = (
            pack.signature(),
            self.adapter_subset,
            self.temperature,
            torch.is_inference_mode_enabled(),
            _autocast_state(tensors[0].device.type),
        )
        key = ProductCache.key(tensors, static)
        if key is None:
            return self._all_products(pack)
        products = self._products_cache.get(tensors, key)
        if products is None:
            self._products_cache.misses += 1
            products = self._all_products(pack)
            self._products_cache.put(tensors, key, products)
        else:
            self._products_cache.hits += 1
        return products

    def train(self, mode: bool = True) -> FusionLayer:
        self._products_cache.clear()
        return super().train(mode)

    def _apply(self, fn: Any, recurse: bool = True) -> FusionLayer:
        self._products_cache.clear()  # .to() / .half(): new storage, drop the memo early
        return super()._apply(fn, recurse)


def _autocast_state(device_type: str) -> Hashable:
    """Autocast changes the dtype of the products, so it is part of the memo key."""
    try:
        enabled = torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4
        return (torch.is_autocast_enabled(), torch.is_autocast_cpu_enabled())
    return (enabled, torch.get_autocast_dtype(device_type) if enabled else None)


def one_of(name: str, value: Any, alias: str, alias_value: Any, default: Any) -> Any:
    """A constructor argument given under its name or its documented alias (not both), else ``default``."""
    if value is not None and alias_value is not None and value != alias_value:
        raise TypeError(f"{name}={value!r} and {alias}={alias_value!r} are the same argument; give one")
    return value if value is not None else (alias_value if alias_value is not None else default)


class _Given:
    """An adapter whose contribution is already known (the stand-alone form): called on any input, returns it."""

    def __init__(self, contribution: torch.Tensor) -> None:
        self.contribution = contribution

    def __call__(self, _: torch.Tensor) -> torch.Tensor:
        return self.contribution
