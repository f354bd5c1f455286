"""Sparse top-k fusion: a gate picks k of the N adapters per token (or per example); only those k are run.

Routing over adapters as in the Switch Transformer (Fedus et al. 2021, https://arxiv.org/abs/2101.03961) and
GShard (Lepikhin et al. 2020, https://arxiv.org/abs/2006.16668)::

    logits = (Wg x + bg) / T     x = the token's sub-layer output h     (routing="token")
                                 x = h at the sequence's first position (routing="example": the [CLS] token)
    S = the k largest logits;  w_i = softmax_{j in S}(logits)_i for i in S, else 0
    out = residual + sum_{i in S} w_i up_i

With k = N this is exactly dense softmax gating over all N adapters (``GatingFusion`` with
``gate_activation="softmax"`` and the same gate weights). While training, ``regularization_loss`` returns the
Switch load-balancing term of the last forward, ``lambda * N * sum_i f_i P_i`` (``f_i`` the share of the
``units * k`` routing choices that picked adapter ``i``, ``P_i`` the mean of ``softmax(logits)_i``), which is
smallest when the choices spread evenly over the adapters.

Only the chosen adapters are computed, two ways (both exact):

* gather (``routing="example"``, adapters of one bottleneck size, activation and dropout reading one input):
  the chosen adapters' packed weights are gathered per example (``[batch, k * r, hidden]``), so the whole
  point is two batched matmuls;
* dispatch (every other case): the routing choices are sorted by adapter and each chosen adapter runs once on
  the tokens (or examples) that chose it; results are scattered back with ``index_add_``.

Per-token routing is the default: each token's choice depends on that token only, so it agrees between a full
forward pass and generation with a KV cache. Per-example routing reads the first position, which for
right-padded encoder batches is the first real token; it is the fast choice for encoders.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F

from adapter_fusion.adapters import BottleneckAdapter
from adapter_fusion.config import check_choice, check_positive
from adapter_fusion.fusion.base import FusionLayer, FusionOutput, Products
from adapter_fusion.fusion.packing import AdapterPack
from adapter_fusion.fusion.registry import (
    FUSION_METHODS,
    FusionMethod,
    FusionPoint,
    MethodConfig,
    reference_contributions,
)

if TYPE_CHECKING:
    from adapter_fusion.adapters import LoraAdapter
    from adapter_fusion.fusion.config import FusionConfig

ROUTINGS = ("token", "example")


@dataclasses.dataclass(frozen=True)
class SparseFusionConfig(MethodConfig):
    """Sparse (top-k) fusion settings."""

    config_type = "fusion.sparse"

    top_k: int = 2
    """Sparse fusion: how many adapters each token (or example) uses, at most the number of fused adapters; only
    those are computed."""
    routing: str = "token"
    """Sparse fusion: 'token' (each token picks its adapters) or 'example' (each sequence picks them at its first
    position, the [CLS] token of encoders; faster, but not for causal LMs generating with a KV cache)."""
    load_balancing: float = 0.01
    """Sparse fusion: weight of the Switch load-balancing loss added to the training loss (0 disables)."""

    def __post_init__(self) -> None:
        check_positive("top_k", self.top_k, integer=True)
        check_choice("routing", self.routing, ROUTINGS)
        check_positive("load_balancing", self.load_balancing, allow_zero=True)

    def check_adapter_count(self, count: int) -> None:
        if self.top_k > count:
            raise ValueError(f"top_k={self.top_k} exceeds the {count} fused adapters; use top_k <= {count}")


class SparseFusion(FusionLayer):
    """``h + sum_{i in top-k} w_i up_i``: per-token (or per-example) top-k routing over the adapters.

    Args:
        hidden_size: ``d``.
        num_adapters: ``N``.
        top_k: ``k``, how many adapters each token (example) uses, ``1 <= k <= N``.
        routing: ``"token"`` or ``"example"``.
        load_balancing: ``lambda`` of the Switch load-balancing loss (0 disables it).
        temperature: the gate reads ``(Wg x + bg) / T``.

    Parameters: ``gate``, an ``nn.Linear(d, N)``: weight ``N(0, 0.02)`` (so the first choices differ between
    tokens), bias zero.
    """

    def __init__(
        self,
        hidden_size: int,
        num_adapters: int,
        *,
        top_k: int = 2,
        routing: str = "token",
        load_balancing: float = 0.01,
        temperature: float = 1.0,
    ) -> None:
        super().__init__(hidden_size, num_adapters, temperature)
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= num_adapters:
            raise ValueError(f"top_k must be an integer in [1, {num_adapters}] (the fused adapters); got {top_k!r}")
        if routing not in ROUTINGS:
            raise ValueError(f"routing must be one of {ROUTINGS}; got {routing!r}")
        if isinstance(load_balancing, bool) or not isinstance(load_balancing, (int, float)) or load_balancing < 0:
            raise ValueError(f"load_balancing must be a number >= 0; got {load_balancing!r}")
        self.top_k = top_k
        self.routing = routing
        self.load_balancing = float(load_balancing)
        self.gate = nn.Linear(hidden_size, num_adapters)
        nn.init.normal_(self.gate.weight, std=0.02)
        nn.init.zeros_(self.gate.bias)
        # the load-balancing term of the last training forward (not state: it never changes what forward returns)
        self._balance: torch.Tensor | None = None

    def regularization_loss(self) -> torch.Tensor:
        """The load-balancing term of the last forward in training mode (0 before any, or in eval)."""
        return self._balance if self._balance is not None else self.gate.weight.new_zeros(())

    # ------------------------------------------------------------------ routing
    def route(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``hidden [batch, seq, d]`` -> ``(logits [U, N], chosen [U, k], weights [U, k])``, ``U`` the routed
        units: ``batch * seq`` tokens or ``batch`` examples."""
        source = hidden[:, 0] if self.routing == "example" else hidden.reshape(-1, self.hidden_size)
        logits = F.linear(source, self.select(self.gate.weight), self.select(self.gate.bias))  # a subset: its rows
        if self.temperature != 1.0:
            logits = logits / self.temperature
        top, chosen = logits.topk(min(self.top_k, logits.shape[-1]), dim=-1)
        return logits, chosen, torch.softmax(top, dim=-1)

    def balance_loss(self, logits: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        """Switch's ``N * sum_i f_i P_i`` times ``load_balancing`` (1 * lambda when routing is uniform)."""
        n = logits.shape[-1]
        counts = torch.zeros(n, dtype=logits.dtype, device=logits.device)
        counts.index_add_(0, chosen.reshape(-1), torch.ones(chosen.numel(), dtype=logits.dtype, device=logits.device))
        share = counts / chosen.numel()
        mean_probability = torch.softmax(logits, dim=-1).mean(0)
        return self.load_balancing * n * (share * mean_probability).sum()

    def record_balance(self, logits: torch.Tensor, chosen: torch.Tensor) -> None:
        """Keep this forward's balancing term for ``regularization_loss`` (training with grad only)."""
        if self.training and torch.is_grad_enabled() and self.load_balancing > 0:
            self._balance = self.balance_loss(logits, chosen)
        else:
            self._balance = None

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        hidden: torch.Tensor,
        adapters: Sequence[BottleneckAdapter | LoraAdapter],
        ffn_input: torch.Tensor | None = None,
        *,
        reads_ffn_input: Sequence[bool] | None = None,
        residual: bool = True,
        return_weights: bool = False,
        module_input: torch.Tensor | None = None,
    ) -> FusionOutput:
        """As ``FusionLayer.forward``; ``hidden`` must be ``[batch, seq, hidden]``. The weights over adapters
        are ``[batch, seq, N]``, zero for the adapters a token (example) did not choose."""
        if hidden.dim() != 3:
            raise ValueError(f"hidden must be [batch, seq, {self.hidden_size}]; got shape {tuple(hidden.shape)}")
        pack = self.checked_pack(hidden, adapters, ffn_input, reads_ffn_input, module_input)
        logits, chosen, weights = self.route(hidden)
        self.record_balance(logits, chosen)
        if self.routing == "example" and _gatherable(pack):
            delta = self._gathered(hidden, ffn_input if pack.any_reads_ffn_input else None, pack, chosen, weights)
        else:
            delta = self._dispatched((hidden, ffn_input, module_input), pack, chosen, weights)
        out = hidden + delta if residual else delta
        if not return_weights:
            return FusionOutput(out, None)
        dense = weights.new_zeros(chosen.shape[0], pack.n).scatter(-1, chosen, weights)
        if self.routing == "example":
            return FusionOutput(out, dense.unsqueeze(1).expand(*hidden.shape[:-1], pack.n))
        return FusionOutput(out, dense.view(*hidden.shape[:-1], pack.n))

    def _dispatched(
        self,
        sources: tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None],
        pack: AdapterPack,
        chosen: torch.Tensor,
        weights: torch.Tensor,
    ) -> torch.Tensor:
        """Each chosen adapter runs once on the units that chose it, reading its source (``hidden``, the
        feed-forward input or a LoRA's module input, indexed by ``pack.sources``); ``[batch, seq, d]``."""
        hidden = sources[0]
        per_token = self.routing == "token"
        units_of = [None if x is None else x.reshape(-1, x.shape[-1]) if per_token else x for x in sources]
        h = units_of[0]
        assert h is not None
        flat = chosen.reshape(-1)
        order = torch.argsort(flat, stable=True)
        unit_of = torch.div(order, chosen.shape[-1], rounding_mode="floor")
        sorted_weights = weights.reshape(-1)[order]
        counts = torch.bincount(flat, minlength=pack.n).tolist()
        out = torch.zeros_like(h)
        start = 0
        for index, count in enumerate(counts):
            if count == 0:
                continue
            units = unit_of[start : start + count]
            source = units_of[pack.sources[index]]
            assert source is not None
            scale = sorted_weights[start : start + count].view(-1, *([1] * (h.dim() - 1)))
            out.index_add_(0, units, pack.adapters[index](source.index_select(0, units)) * scale)
            start += count
        return out.view_as(hidden)

    def _gathered(
        self,
        hidden: torch.Tensor,
        ffn_input: torch.Tensor | None,
        pack: AdapterPack,
        chosen: torch.Tensor,
        weights: torch.Tensor,
    ) -> torch.Tensor:
        """Per-example routing of same-shaped adapters: gather their packed weights, two batched matmuls."""
        products = self._cached_products(pack)
        B, k, r = chosen.shape[0], chosen.shape[-1], pack.sizes[0]
        down = products["down"][chosen].view(B, k * r, self.hidden_size)  # [B, k r, d]
        down_bias = products["down_bias"][chosen].view(B, 1, k * r)
        source = ffn_input if ffn_input is not None else hidden
        activations = pack.adapters[0].activation(torch.baddbmm(down_bias, source, down.transpose(1, 2)))
        adapter = pack.adapters[0]
        if adapter.dropout.training and adapter.dropout.p > 0:
            activations = F.dropout(activations, adapter.dropout.p, training=True)
        seq = hidden.shape[1]
        activations = (activations.view(B, seq, k, r) * weights.view(B, 1, k, 1)).view(B, seq, k * r)
        up = products["up"][chosen].view(B, k * r, self.hidden_size)  # [B, k r, d], scaled
        up_bias = (weights.unsqueeze(-1) * products["up_bias"][chosen]).sum(1, keepdim=True)  # [B, 1, d]
        return torch.baddbmm(up_bias, activations, up)

    def _all_products(self, pack: AdapterPack) -> Products:
        """Stacked weights for gathering: ``down [N, r, d]``, ``down_bias [N, r]``, ``up [N, r, d]`` (scaled,
        transposed), ``up_bias [N, d]`` (scaled)."""
        down, down_bias = pack.down_weight()
        n, r, d = pack.n, pack.sizes[0], self.hidden_size
        return {
            "down": down.view(n, r, d),
            "down_bias": down_bias.view(n, r),
            "up": pack.up_weight().view(d, n, r).permute(1, 2, 0).contiguous(),
            "up_bias": pack.up_bias_columns().t().contiguous(),
        }

    def extra_repr(self) -> str:
        return f"top_k={self.top_k}, routing={self.routing!r}, load_balancing={self.load_balancing}"


def _gatherable(pack: AdapterPack) -> bool:
    """One bottleneck size, activation, dropout rate and input for every adapter (so their weights stack)."""

    def key(adapter: BottleneckAdapter) -> Hashable:
        return (type(adapter.activation), adapter.activation.extra_repr(), adapter.dropout.p)

    if not all(isinstance(a, BottleneckAdapter) for a in pack.adapters):
        return False  # LoRA adapters read another input and have no activation: dispatched
    return pack.uniform and len({key(a) for a in pack.adapters}) == 1 and len(set(pack.reads_ffn_input)) == 1


def reference_sparse(
    layer: SparseFusion,
    hidden: torch.Tensor,
    adapters: Sequence[BottleneckAdapter | LoraAdapter],
    ffn_input: torch.Tensor | None = None,
    *,
    reads_ffn_input: Sequence[bool] | None = None,
    residual: bool = True,
    module_input: torch.Tensor | None = None,
) -> FusionOutput:
    """The dense computation: every adapter's contribution, weighted by the top-k gate (zeros elsewhere)."""
    ups = reference_contributions(hidden, adapters, ffn_input, reads_ffn_input, module_input)  # [B, S, N, d]
    logits, chosen, weights = layer.route(hidden)
    layer.record_balance(logits, chosen)  # hierarchies mix nodes with the reference: keep the balancing term
    dense = weights.new_zeros(chosen.shape[0], len(adapters)).scatter(-1, chosen, weights)
    if layer.routing == "example":
        dense = dense.unsqueeze(1).expand(*hidden.shape[:-1], len(adapters))
    else:
        dense = dense.view(*hidden.shape[:-1], len(adapters))
    mixed = (dense.unsqueeze(-1) * ups).sum(-2)
    return FusionOutput(hidden + mixed if residual else mixed, dense)


def build_sparse(config: FusionConfig, point: FusionPoint, shared: dict[str, Any]) -> SparseFusion:
    settings = config.settings_of(SparseFusionConfig)
    settings.check_adapter_count(point.num_fused)
    return SparseFusion(
        point.hidden_size,
        point.num_adapters,
        top_k=min(settings.top_k, point.num_adapters),  # a point holding fewer adapters than k uses them all
        routing=settings.routing,
        load_balancing=settings.load_balancing,
        temperature=config.temperature,
    )


FUSION_METHODS.register(
    "sparse",
    FusionMethod(
        layer_class=SparseFusion,
        build=build_sparse,
        reference=reference_sparse,
        config_class=SparseFusionConfig,
        single_adapter_identity={"top_k": 1},
        dense=False,
        description="top-k routing: a gate picks k adapters per token (or example), only those are computed",
    ),
)
