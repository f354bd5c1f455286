"""Pack N adapters (bottleneck or LoRA) for one batched pass: the fast path shared by every fusion method.

AdapterHub runs the fused adapters one after the other. Here the N down-projections (bottlenecks
``r_1 .. r_N``, ``R = sum r_i``) become one ``[R, hidden]`` weight, so one matmul gives every adapter's
bottleneck activations ``a = [a_1 | ... | a_N]`` (``[tokens, R]``), and the N up-projections become one block of
columns ``[s_1 U_1 | ... | s_N U_N | s_1 c_1 ... s_N c_N]`` (``[hidden, R + N]``, ``s_i`` the adapter's scaling,
``c_i`` its up bias), so any mixture ``sum_i w_i up_i`` is one matmul of ``[w (x) a, w]`` with those columns.

Adapters may differ in bottleneck size, activation, dropout and input (parallel adapters read the feed-forward
input): activations and dropout are applied per run of consecutive adapters that agree, and the
down-projection is one matmul per run of adapters reading the same input. Results are exact in every case;
only the number of kernel launches grows with the number of runs.

A LoRA adapter packs as a bottleneck whose down-projection is ``A`` (no bias), activation the identity, and
up-projection ``B`` (no bias, scaled by ``alpha / r``), reading the input of the linear layer it adapts (the
"module input") instead of that layer's output ``h``; its dropout acts on that input, one mask per adapter, as in
PEFT.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

import torch
from torch.nn import functional as F

from adapter_fusion.adapters import BottleneckAdapter, LoraAdapter

# where an adapter's down-projection reads from
HIDDEN, FFN_INPUT, MODULE_INPUT = 0, 1, 2
SOURCE_NAMES = ("the sub-layer output", "the feed-forward input", "the adapted linear layer's input")


def _runs(keys: Sequence[Hashable]) -> list[tuple[int, int]]:
    """Maximal runs ``[start, end)`` of equal consecutive keys."""
    runs: list[tuple[int, int]] = []
    start = 0
    for index in range(1, len(keys) + 1):
        if index == len(keys) or keys[index] != keys[start]:
            runs.append((start, index))
            start = index
    return runs


def _activation_key(adapter: BottleneckAdapter | LoraAdapter) -> Hashable:
    if isinstance(adapter, LoraAdapter):
        return "identity"
    return (type(adapter.activation), adapter.activation.extra_repr())


def _bottleneck_dropout(adapter: BottleneckAdapter | LoraAdapter) -> float:
    """The dropout on the bottleneck activations in effect now (LoRA's acts on its input instead)."""
    if isinstance(adapter, LoraAdapter) or not adapter.dropout.training:
        return 0.0
    return float(adapter.dropout.p)


def _input_dropout(adapter: BottleneckAdapter | LoraAdapter) -> float:
    """The dropout on a LoRA adapter's input in effect now (0 for bottleneck adapters)."""
    if isinstance(adapter, LoraAdapter) and adapter.dropout.training:
        return float(adapter.dropout.p)
    return 0.0


def _down_linear(adapter: BottleneckAdapter | LoraAdapter) -> torch.nn.Linear:
    return adapter.lora_A if isinstance(adapter, LoraAdapter) else adapter.down


def _up_linear(adapter: BottleneckAdapter | LoraAdapter) -> torch.nn.Linear:
    return adapter.lora_B if isinstance(adapter, LoraAdapter) else adapter.up


def _down(adapter: BottleneckAdapter | LoraAdapter) -> tuple[torch.Tensor, torch.Tensor | None]:
    linear = _down_linear(adapter)
    return linear.weight, linear.bias


def _up(adapter: BottleneckAdapter | LoraAdapter) -> tuple[torch.Tensor, torch.Tensor | None]:
    linear = _up_linear(adapter)
    return linear.weight, linear.bias


class AdapterPack:
    """A read-only view of N adapters at one adapter point, laid out for batched maths.

    Built per forward (it only holds references and sizes); the weight products derived from it are what the
    fusion layers cache. ``sources[i]`` says what adapter ``i`` reads: ``HIDDEN`` (the sub-layer output ``h``),
    ``FFN_INPUT`` (parallel bottleneck adapters) or ``MODULE_INPUT`` (LoRA adapters).
    """

    def __init__(
        self,
        adapters: Sequence[BottleneckAdapter | LoraAdapter],
        reads_ffn_input: Sequence[bool] | None,
        hidden_size: int,
    ) -> None:
        adapters = tuple(adapters)
        if not adapters:
            raise ValueError("a fusion needs at least one adapter at every fused point; got none")
        for index, adapter in enumerate(adapters):
            if not isinstance(adapter, (BottleneckAdapter, LoraAdapter)):
                raise TypeError(
                    f"adapter {index} must be a BottleneckAdapter or LoraAdapter; got {type(adapter).__name__}"
                )
        reads = tuple(bool(r) for r in reads_ffn_input) if reads_ffn_input is not None else (False,) * len(adapters)
        if len(reads) != len(adapters):
            raise ValueError(f"reads_ffn_input has {len(reads)} entries for {len(adapters)} adapters")
        self.sources = tuple(
            MODULE_INPUT if isinstance(a, LoraAdapter) else FFN_INPUT if r else HIDDEN for a, r in zip(adapters, reads)
        )
        # sizes from the modules' int attributes, not weight shapes (which tracing turns into tensors)
        outputs = [_up_linear(a).out_features for a in adapters]
        inputs = [_down_linear(a).in_features for a, source in zip(adapters, self.sources) if source != MODULE_INPUT]
        if set(outputs) != {hidden_size} or set(inputs) - {hidden_size}:
            raise ValueError(
                f"every fused adapter must have the fusion's hidden size {hidden_size}; "
                f"got adapters with output sizes {outputs} (bottleneck input sizes {inputs})"
            )
        module_inputs = {_down_linear(a).in_features for a, s in zip(adapters, self.sources) if s == MODULE_INPUT}
        if len(module_inputs) > 1:
            raise ValueError(f"LoRA adapters fused at one point must read inputs of one size; got {module_inputs}")
        self.module_input_size = next(iter(module_inputs), None)
        self.adapters = adapters
        self.hidden_size = hidden_size
        self.reads_ffn_input = tuple(source == FFN_INPUT for source in self.sources)
        self.sizes = tuple(_down_linear(a).out_features for a in adapters)
        self.total = sum(self.sizes)
        self.uniform = len(set(self.sizes)) == 1
        offsets = [0]
        for size in self.sizes:
            offsets.append(offsets[-1] + size)
        self.offsets = tuple(offsets)

    # ------------------------------------------------------------------ structure
    @property
    def n(self) -> int:
        return len(self.adapters)

    @property
    def any_reads_ffn_input(self) -> bool:
        return FFN_INPUT in self.sources

    @property
    def any_reads_module_input(self) -> bool:
        return MODULE_INPUT in self.sources

    @property
    def all_read_hidden(self) -> bool:
        return set(self.sources) == {HIDDEN}

    def tensors(self) -> list[torch.Tensor]:
        """Every weight the packed products depend on (the cache key of the fusion layers)."""
        return [t for a in self.adapters for pair in (_down(a), _up(a)) for t in pair if t is not None]

    def signature(self) -> tuple[Hashable, ...]:
        """Everything but the weights that the packed products depend on."""
        return (
            self.sizes,
            self.sources,
            tuple(float(a.scaling) for a in self.adapters),
            tuple(_activation_key(a) for a in self.adapters),
        )

    # ------------------------------------------------------------------ packed weights (no token data)
    def down_weight(self, start: int = 0, end: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``[R, in]`` and ``[R]``: the down-projections of adapters ``start..end`` (default all), stacked; they
        must read inputs of one width (LoRA's bias is zero)."""
        chosen = self.adapters[start:end]
        weights = [_down(a)[0] for a in chosen]
        biases = [b if b is not None else w.new_zeros(w.shape[0]) for w, b in (_down(a) for a in chosen)]
        if len(chosen) == 1:
            return weights[0], biases[0]
        return torch.cat(weights), torch.cat(biases)

    def down_products(self) -> dict[str, torch.Tensor]:
        """The stacked down-projections per run of adapters reading one source: ``down_weight.<run>`` and
        ``down_bias.<run>`` (read by ``down``)."""
        products = {}
        for index, (start, end) in enumerate(_runs(self.sources)):
            products[f"down_weight.{index}"], products[f"down_bias.{index}"] = self.down_weight(start, end)
        return products

    def up_weight(self) -> torch.Tensor:
        """``[hidden, R]``: ``[s_1 U_1 | ... | s_N U_N]``."""
        return torch.cat([_scaled(_up(a)[0], a.scaling) for a in self.adapters], dim=1)

    def up_bias_columns(self) -> torch.Tensor:
        """``[hidden, N]``: column ``i`` is ``s_i c_i`` (zero for LoRA)."""
        columns = []
        for adapter in self.adapters:
            weight, bias = _up(adapter)
            columns.append(_scaled(bias, adapter.scaling) if bias is not None else weight.new_zeros(weight.shape[0]))
        return torch.stack(columns, dim=1)

    def up_columns(self) -> torch.Tensor:
        """``[hidden, R + N]``: ``up_weight()`` then ``up_bias_columns()``."""
        return torch.cat([self.up_weight(), self.up_bias_columns()], dim=1)

    # ------------------------------------------------------------------ token maths
    def down(
        self,
        hidden: torch.Tensor,
        ffn_input: torch.Tensor | None,
        module_input: torch.Tensor | None,
        products: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        """Pre-activations ``[tokens, R]``: one matmul per run of adapters that read the same source (LoRA
        adapters with input dropout in training: one each, every one with its own mask)."""
        inputs = (hidden, ffn_input, module_input)
        parts = []
        for index, (start, end) in enumerate(_runs(self.sources)):
            source = inputs[self.sources[start]]
            if source is None:
                raise ValueError(f"adapter {start} reads {SOURCE_NAMES[self.sources[start]]}, but none was given")
            weight, bias = products[f"down_weight.{index}"], products[f"down_bias.{index}"]
            base = self.offsets[start]
            # adapters with input dropout get a key of their own, so each is its own sub-run (its own mask)
            keys = [index if _input_dropout(a) else None for index, a in enumerate(self.adapters[start:end])]
            for lo, hi in _runs(keys):
                p = _input_dropout(self.adapters[start + lo])
                x = F.dropout(source, p, training=True) if p else source
                if (lo, hi) == (0, end - start):
                    parts.append(F.linear(x, weight, bias))
                    continue
                rows = slice(self.offsets[start + lo] - base, self.offsets[start + hi] - base)
                parts.append(F.linear(x, weight[rows], bias[rows]))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        """``[tokens, R] -> [tokens, R]``: each adapter's activation, then its dropout (when training)."""
        runs = _runs([(_activation_key(a), _bottleneck_dropout(a)) for a in self.adapters])
        parts = []
        for start, end in runs:
            adapter = self.adapters[start]
            chunk = pre if len(runs) == 1 else pre[..., self.offsets[start] : self.offsets[end]]
            if isinstance(adapter, BottleneckAdapter):
                chunk = adapter.activation(chunk)
            p = _bottleneck_dropout(adapter)
            if p > 0:
                chunk = F.dropout(chunk, p, training=True)
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def scale(self, activations: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``a_i * w_i`` per adapter: ``[T, R]`` and ``[T, *extra, N]`` (or ``[N]``) -> ``[T, *extra, R]``."""
        extra = weights.dim() - 2 if weights.dim() > 1 else 0
        a = activations.reshape(activations.shape[0], *([1] * extra), self.total)
        if self.uniform:
            r = self.sizes[0]
            blocks = a.unflatten(-1, (self.n, r)) * weights.unsqueeze(-1)
            return blocks.flatten(-2)
        return a * self.expand(weights)

    def expand(self, weights: torch.Tensor) -> torch.Tensor:
        """``[..., N] -> [..., R]``: adapter ``i``'s weight repeated over its ``r_i`` bottleneck units."""
        if self.uniform:
            return weights.unsqueeze(-1).expand(*weights.shape, self.sizes[0]).flatten(-2)
        # a gather with a constant index (not repeat_interleave, which the ONNX exporter can't translate)
        index = torch.tensor([i for i, size in enumerate(self.sizes) for _ in range(size)], device=weights.device)
        return weights.index_select(-1, index)

    def segment_sum(self, values: torch.Tensor) -> torch.Tensor:
        """``[..., R] -> [..., N]``: the sum over each adapter's bottleneck units."""
        if self.uniform:
            return values.unflatten(-1, (self.n, self.sizes[0])).sum(-1)
        return torch.stack([chunk.sum(-1) for chunk in values.split(list(self.sizes), dim=-1)], dim=-1)


def _scaled(tensor: torch.Tensor, scaling: float) -> torch.Tensor:
    return tensor if scaling == 1.0 else tensor * scaling


Products = dict[str, torch.Tensor]
ProductFn = Callable[[AdapterPack], Products]
