"""Attention fusion (Pfeiffer et al., EACL 2021, https://arxiv.org/abs/2005.00247), computed without a d x d
matmul per adapter.

The maths (AdapterHub's ``BertFusion``), at each token, with ``up_i = s_i (U_i a_i + c_i)`` the i-th adapter's
contribution (no residual) and ``a_i`` its bottleneck activations::

    q = Wq h + bq,   k_i = Wk up_i + bk,   score_i = q . k_i / T,   p = softmax_i(score)
    out = residual + Wv (sum_i p_i up_i) + bv        (residual = h, or 0 for residual=False adapters)

Dropout acts on ``p`` in training (AdapterHub puts it on the scores); ``bv`` is added once. With
``num_heads = H > 1`` the hidden dims split into H heads of ``d / H``; head ``j`` has its own softmax over
adapters, ``score_{i,j} = q_j . k_{i,j} / T`` (no ``1/sqrt(d/H)``: like the paper's single head, scale it with the
temperature), and output dims of head ``j`` are ``sum_i p_{i,j} (Wv up_i)_j + bv_j``.

Fast path (exact): ``q . bk`` is the same for every adapter and cancels in the softmax, so
``score_i = (Wq h + bq)^T Wk up_i``. With ``K = Wk [s U | s c]`` (``[d, R + N]``) folded once per forward:

* ``H = 1`` (and whenever ``(H - 1)(R + N) < d``), "folded query": ``G = K_j^T Wq_j`` per head (``[H(R+N), d]``)
  joins the adapters' down-projections, so ONE matmul of ``h`` gives the bottleneck pre-activations and
  ``z = G h + g``; ``score_i = z_i . a_i + z_{c_i}``. Per token: ``(R + H(R+N)) d`` multiply-adds.
* otherwise, "query": the matmul of ``h`` gives ``q = Wq h + bq`` instead, and ``z_j = K_j^T q_j`` costs
  ``(R + N) d``. Per token: ``(R + d) d + (R + N) d``.

The value side folds ``V = Wv [s U | s c]`` (``[d, R + N]``): ``out = V [p (x) a, p] + bv``, one matmul of
``(R + N) d`` per token. Total for ``H = 1``: about ``3 R d`` per token against ``2 R d + (2N + 1) d^2`` when
every adapter's up, key and value are computed like AdapterHub. Folding costs ``3 d^2 (R + N)`` per forward,
memoised in eval mode.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F

from adapter_fusion.config import check_choice, check_positive, check_probability, field_aliases
from adapter_fusion.fusion.base import FusionLayer, FusionOutput, Products, one_of
from adapter_fusion.fusion.packing import AdapterPack
from adapter_fusion.fusion.registry import (
    FUSION_METHODS,
    FusionMethod,
    FusionPoint,
    MethodConfig,
    reference_contributions,
)

if TYPE_CHECKING:
    from adapter_fusion.adapters import BottleneckAdapter, LoraAdapter
    from adapter_fusion.fusion.config import FusionConfig

VALUE_INITIALIZATIONS = ("identity", "random")


@field_aliases(fusion_dropout="attention_dropout")
@dataclasses.dataclass(frozen=True)
class AttentionFusionConfig(MethodConfig):
    """Attention fusion settings. ``fusion_dropout`` is accepted as another name of ``attention_dropout``."""

    config_type = "fusion.attention"

    num_attention_heads: int = 1
    """Attention fusion: number of heads, each with its own softmax over adapters (1 in the paper). Must divide
    the hidden size."""
    attention_dropout: float = 0.1
    """Attention fusion: dropout on the attention probabilities during training."""
    value_initialization: str = "identity"
    """Attention fusion: 'identity' (the value matrix starts as the identity) or 'random' (N(0, 0.02))."""
    value_regularization: float = 0.01
    """Attention fusion: weight of ||I - V||_F^2 summed over layers, added to the training loss (0 disables)."""

    def __post_init__(self) -> None:
        check_positive("num_attention_heads", self.num_attention_heads, integer=True)
        check_probability("attention_dropout", self.attention_dropout)
        check_choice("value_initialization", self.value_initialization, VALUE_INITIALIZATIONS)
        check_positive("value_regularization", self.value_regularization, allow_zero=True)


class AttentionFusion(FusionLayer):
    """Attention over adapters at one point: query from ``h``, keys and values from each adapter's output.

    Args:
        hidden_size: ``d``.
        num_adapters: ``N``.
        num_heads: ``H``; 1 is the paper's fusion. Must divide ``d``.
        attention_dropout: dropout on the probabilities in training.
        value_initialization: ``"identity"`` (``Wv = I``, ``bv = 0``: at start the output is the average of the
            adapters' contributions) or ``"random"`` (``N(0, 0.02)``).
        value_regularization: weight ``lambda`` of ``lambda * ||I - Wv||_F^2`` in ``regularization_loss``.
        temperature: initial softmax temperature ``T``.
        fold_query: force the folded-query (``True``) or query (``False``) path; ``None`` picks the cheaper.
        num_attention_heads, dropout: the documented names of ``num_heads`` and ``attention_dropout`` (the
            documentation's default of 8 heads is not the paper's: 1 unless given).

    Parameters: ``query``, ``key``, ``value``, each ``nn.Linear(d, d)``; query and key start ``N(0, 0.02)``
    with zero bias (AdapterHub's BERT init).
    """

    def __init__(
        self,
        hidden_size: int,
        num_adapters: int,
        num_heads: int | None = None,
        attention_dropout: float | None = None,
        temperature: float = 1.0,
        *,
        value_initialization: str = "identity",
        value_regularization: float = 0.0,
        fold_query: bool | None = None,
        num_attention_heads: int | None = None,
        dropout: float | None = None,
    ) -> None:
        num_heads = one_of("num_heads", num_heads, "num_attention_heads", num_attention_heads, 1)
        attention_dropout = one_of("attention_dropout", attention_dropout, "dropout", dropout, 0.1)
        super().__init__(hidden_size, num_adapters, temperature)
        if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads <= 0:
            raise ValueError(f"num_attention_heads must be a positive integer; got {num_heads!r}")
        if hidden_size % num_heads:
            raise ValueError(
                f"num_attention_heads={num_heads} must divide the hidden size {hidden_size} "
                f"(divisors: {[k for k in range(1, hidden_size + 1) if hidden_size % k == 0]})"
            )
        if value_initialization not in VALUE_INITIALIZATIONS:
            raise ValueError(
                f"value_initialization must be one of {VALUE_INITIALIZATIONS}; got {value_initialization!r}"
            )
        self.num_heads = num_heads
        self.head_size = hidden_size // num_heads
        self.attention_dropout = float(attention_dropout)
        self.value_regularization = float(value_regularization)
        self.fold_query = fold_query
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.reset_parameters(value_initialization)

    def reset_parameters(self, value_initialization: str = "identity") -> None:
        for linear in (self.query, self.key, self.value):
            nn.init.normal_(linear.weight, std=0.02)
            nn.init.zeros_(linear.bias)
        if value_initialization == "identity":
            with torch.no_grad():
                self.value.weight.copy_(torch.eye(self.hidden_size))

    def regularization_loss(self) -> torch.Tensor:
        """``lambda * ||I - Wv||_F^2`` (the paper's value regulariser)."""
        if self.value_regularization == 0.0:
            return self.value.weight.new_zeros(())
        identity = torch.eye(self.hidden_size, dtype=self.value.weight.dtype, device=self.value.weight.device)
        return self.value_regularization * (identity - self.value.weight).pow(2).sum()

    def uses_folded_query(self, pack: AdapterPack) -> bool:
        if self.fold_query is not None:
            return self.fold_query
        return (self.num_heads - 1) * (pack.total + pack.n) < self.hidden_size

    def _products(self, pack: AdapterPack) -> Products:
        H, dh, d = self.num_heads, self.head_size, self.hidden_size
        columns = pack.up_columns()  # [d, R + N]
        C = columns.shape[1]
        keys = (self.key.weight @ columns).view(H, dh, C)  # bk dropped: q . bk cancels in the softmax
        values = self.value.weight @ columns  # [d, R + N]
        products: Products = {"values": values if H == 1 else values.view(H, dh, C).transpose(1, 2)}
        if self.uses_folded_query(pack):
            keys_t = keys.transpose(1, 2)  # [H, C, dh]
            products["extra_weight"] = (keys_t @ self.query.weight.view(H, dh, d)).reshape(H * C, d)
            products["extra_bias"] = (keys_t @ self.query.bias.view(H, dh, 1)).reshape(H * C)
        else:
            products["extra_weight"], products["extra_bias"] = self.query.weight, self.query.bias
            products["keys"] = keys
        return products

    def _mix(
        self, activations: torch.Tensor, extra: torch.Tensor, pack: AdapterPack, products: Products
    ) -> tuple[torch.Tensor, torch.Tensor]:
        T, H, R = activations.shape[0], self.num_heads, pack.total
        C = R + pack.n
        if "keys" in products:  # query path: per-head z_j = K_j^T q_j
            q = extra.view(T, H, self.head_size).transpose(0, 1)  # [H, T, dh]
            z = torch.bmm(q, products["keys"]).transpose(0, 1)  # [T, H, C]
        else:
            z = extra.view(T, H, C)
        scores = pack.segment_sum(z[..., :R] * activations.unsqueeze(1)) + z[..., R:]  # [T, H, N]
        probs = torch.softmax(scores if self.temperature == 1.0 else scores / self.temperature, dim=-1)
        probs = F.dropout(probs, self.attention_dropout, self.training)
        mixed = torch.cat([pack.scale(activations, probs), probs], dim=-1)  # [T, H, R + N]
        if H == 1:
            delta = F.linear(mixed.view(T, C), products["values"], self.value.bias)
            return delta, probs.view(T, pack.n)
        delta = torch.bmm(mixed.transpose(0, 1), products["values"]).transpose(0, 1).reshape(T, self.hidden_size)
        return delta + self.value.bias, probs


def reference_attention(
    layer: AttentionFusion,
    hidden: torch.Tensor,
    adapters: Sequence[BottleneckAdapter | LoraAdapter],
    ffn_input: torch.Tensor | None = None,
    *,
    reads_ffn_input: Sequence[bool] | None = None,
    residual: bool = True,
    module_input: torch.Tensor | None = None,
) -> FusionOutput:
    """AdapterHub's way: every adapter's up, key and value in ``d`` dims, then attention. For tests/benchmarks."""
    H, dh = layer.num_heads, layer.head_size
    ups = reference_contributions(hidden, adapters, ffn_input, reads_ffn_input, module_input)  # [..., N, d]
    q = layer.query(hidden).unflatten(-1, (H, dh))  # [..., H, dh]
    k = layer.key(ups).unflatten(-1, (H, dh))  # [..., N, H, dh]
    v = F.linear(ups, layer.value.weight).unflatten(-1, (H, dh))  # [..., N, H, dh]
    scores = (q.unsqueeze(-3) * k).sum(-1).transpose(-1, -2)  # [..., H, N]
    probs = torch.softmax(scores / layer.temperature, dim=-1)
    probs = F.dropout(probs, layer.attention_dropout, layer.training)
    context = (probs.transpose(-1, -2).unsqueeze(-1) * v).sum(-3).flatten(-2) + layer.value.bias
    out = hidden + context if residual else context
    return FusionOutput(out, probs.squeeze(-2) if H == 1 else probs)


def build_attention(config: FusionConfig, point: FusionPoint, shared: dict[str, Any]) -> AttentionFusion:
    settings = config.settings_of(AttentionFusionConfig)
    return AttentionFusion(
        point.hidden_size,
        point.num_adapters,
        num_heads=settings.num_attention_heads,
        attention_dropout=settings.attention_dropout,
        value_initialization=settings.value_initialization,
        value_regularization=settings.value_regularization,
        temperature=config.temperature,
    )


FUSION_METHODS.register(
    "attention",
    FusionMethod(
        layer_class=AttentionFusion,
        build=build_attention,
        reference=reference_attention,
        config_class=AttentionFusionConfig,
        single_adapter_identity={"value_initialization": "identity"},
        description="AdapterFusion: attention over the adapters' outputs, query from the sub-layer output",
    ),
)
