"""Pack N bottleneck adapters for one batched pass: the fast path shared by every fusion method.

AdapterHub runs the fused adapters one after the other. Here the N down-projections (bottlenecks
``r_1 .. r_N``, ``R = sum r_i``) become one ``[R, hidden]`` weight, so one matmul gives every adapter's
bottleneck activations ``a = [a_1 | ... | a_N]`` (``[tokens, R]``), and the N up-projections become one block of
columns ``[s_1 U_1 | ... | s_N U_N | s_1 c_1 ... s_N c_N]`` (``[hidden, R + N]``, ``s_i`` the adapter's scaling,
``c_i`` its up bias), so any mixture ``sum_i w_i up_i`` is one matmul of ``[w (x) a, w]`` with those columns.

Adapters may differ in bottleneck size, activation, dropout and input (parallel adapters read the feed-forward
input): activations and dropout are applied per run of consecutive adapters that agree, and the
down-projection is one matmul per run of adapters reading the same input. Results are exact in every case;
only the number of kernel launches grows with the number of runs.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

import torch
from torch.nn import functional as F

from adapter_fusion.adapters import BottleneckAdapter


def _runs(keys: Sequence[Hashable]) -> list[tuple[int, int]]:
    """Maximal runs ``[start, end)`` of equal consecutive keys."""
    runs: list[tuple[int, int]] = []
    start = 0
    for index in range(1, len(keys) + 1):
        if index == len(keys) or keys[index] != keys[start]:
            runs.append((start, index))
            start = index
    return runs


def _activation_key(module: torch.nn.Module) -> Hashable:
    return (type(module), module.extra_repr())


class AdapterPack:
    """A read-only view of N adapters at one adapter point, laid out for batched maths.

    Built per forward (it only holds references and sizes); the weight products derived from it are what the
    fusion layers cache.
    """

    def __init__(
        self,
        adapters: Sequence[BottleneckAdapter],
        reads_ffn_input: Sequence[bool] | None,
        hidden_size: int,
    ) -> None:
        adapters = tuple(adapters)
        if not adapters:
            raise ValueError("a fusion needs at least one adapter at every fused point; got none")
        for index, adapter in enumerate(adapters):
            if not isinstance(adapter, BottleneckAdapter):
                raise TypeError(f"adapter {index} must be a BottleneckAdapter; got {type(adapter).__name__}")
        sizes_seen = sorted({a.down.in_features for a in adapters} | {a.up.out_features for a in adapters})
        if sizes_seen != [hidden_size]:
            raise ValueError(
                f"every fused adapter must have the fusion's hidden size {hidden_size}; "
                f"got adapters with hidden sizes {[a.down.in_features for a in adapters]}"
            )
        reads = tuple(bool(r) for r in reads_ffn_input) if reads_ffn_input is not None else (False,) * len(adapters)
        if len(reads) != len(adapters):
            raise ValueError(f"reads_ffn_input has {len(reads)} entries for {len(adapters)} adapters")
        self.adapters = adapters
        self.hidden_size = hidden_size
        self.reads_ffn_input = reads
        self.sizes = tuple(a.down.out_features for a in adapters)
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
        return any(self.reads_ffn_input)

    @property
    def all_read_hidden(self) -> bool:
        return not self.any_reads_ffn_input

    def tensors(self) -> list[torch.Tensor]:
        """Every weight the packed products depend on (the cache key of the fusion layers)."""
        return [t for a in self.adapters for t in (a.down.weight, a.down.bias, a.up.weight, a.up.bias)]

    def signature(self) -> tuple[Hashable, ...]:
        """Everything but the weights that the packed products depend on."""
        return (
            self.sizes,
            self.reads_ffn_input,
            tuple(float(a.scaling) for a in self.adapters),
            tuple(_activation_key(a.activation) for a in self.adapters),
        )

    # ------------------------------------------------------------------ packed weights (no token data)
    def down_weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``[R, hidden]`` and ``[R]``: every down-projection, stacked."""
        if self.n == 1:
            return self.adapters[0].down.weight, self.adapters[0].down.bias
        return (
            torch.cat([a.down.weight for a in self.adapters]),
            torch.cat([a.down.bias for a in self.adapters]),
        )

    def up_weight(self) -> torch.Tensor:
        """``[hidden, R]``: ``[s_1 U_1 | ... | s_N U_N]``."""
        return torch.cat([_scaled(a.up.weight, a.scaling) for a in self.adapters], dim=1)

    def up_bias_columns(self) -> torch.Tensor:
        """``[hidden, N]``: column ``i`` is ``s_i c_i``."""
        return torch.stack([_scaled(a.up.bias, a.scaling) for a in self.adapters], dim=1)

    def up_columns(self) -> torch.Tensor:
        """``[hidden, R + N]``: ``up_weight()`` then ``up_bias_columns()``."""
        return torch.cat([self.up_weight(), self.up_bias_columns()], dim=1)

    # ------------------------------------------------------------------ token maths
    def down(
        self, hidden: torch.Tensor, ffn_input: torch.Tensor | None, weight: torch.Tensor, bias: torch.Tensor
    ) -> torch.Tensor:
        """Pre-activations ``[tokens, R]``, one matmul per run of adapters that read the same input."""
        runs = _runs(self.reads_ffn_input)
        parts = []
        for start, end in runs:
            source = ffn_input if self.reads_ffn_input[start] else hidden
            if source is None:
                raise ValueError(
                    f"adapter {start} reads the feed-forward input (parallel placement), but none was given"
                )
            lo, hi = self.offsets[start], self.offsets[end]
            parts.append(F.linear(source, weight[lo:hi], bias[lo:hi]))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        """``[tokens, R] -> [tokens, R]``: each adapter's activation, then its dropout (when training)."""

        def key(adapter: BottleneckAdapter) -> Hashable:
            dropout = adapter.dropout.p if adapter.dropout.training else 0.0
            return (_activation_key(adapter.activation), dropout)

        runs = _runs([key(a) for a in self.adapters])
        parts = []
        for start, end in runs:
            adapter = self.adapters[start]
            chunk = pre if len(runs) == 1 else pre[..., self.offsets[start] : self.offsets[end]]
            chunk = adapter.activation(chunk)
            if adapter.dropout.training and adapter.dropout.p > 0:
                chunk = F.dropout(chunk, adapter.dropout.p, training=True)
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
        repeats = torch.tensor(self.sizes, device=weights.device)
        return weights.repeat_interleave(repeats, dim=-1, output_size=self.total)

    def segment_sum(self, values: torch.Tensor) -> torch.Tensor:
        """``[..., R] -> [..., N]``: the sum over each adapter's bottleneck units."""
        if self.uniform:
            return values.unflatten(-1, (self.n, self.sizes[0])).sum(-1)
        return torch.stack([chunk.sum(-1) for chunk in values.split(list(self.sizes), dim=-1)], dim=-1)


def _scaled(tensor: torch.Tensor, scaling: float) -> torch.Tensor:
    return tensor if scaling == 1.0 else tensor * scaling


Products = dict[str, torch.Tensor]
ProductFn = Callable[[AdapterPack], Products]
