"""Exact behaviour of attention fusion (Pfeiffer et al., 2021) and of the adapter packing under it: defaults, the
documented aliases, the full text of every error message, which score path runs, the value regulariser, outputs
against a hand-written version of the paper's maths (fast path, plain reference, stand-alone form; temperatures
other than 1, several leading dimensions, one and several heads), and the packed path against the reference when
adapters read different inputs and draw their own dropout masks.

Written against the surviving mutants of issue 14 (``tests/MUTATION.md``): each assertion pins a behaviour a
user relies on, with the values worked out here rather than through the library.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from adapter_fusion.adapters import BottleneckAdapter, LoraAdapter
from adapter_fusion.fusion import FUSION_METHODS, AttentionFusion, FusionConfig, FusionPoint
from adapter_fusion.fusion.attention import AttentionFusionConfig, reference_attention
from adapter_fusion.fusion.packing import AdapterPack, _runs
from test_fusion import HIDDEN, hand_contributions, hand_softmax, one_thread, temperature_setup  # noqa: F401
from test_fusion_methods_exact import exactly

DOUBLE = torch.float64


def hand_attention(
    layer: AttentionFusion, hidden: torch.Tensor, ups: torch.Tensor, residual: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's fusion written out: ``q = Wq h + bq``, ``k_i = Wk up_i + bk``, ``v_i = Wv up_i``, per head
    ``p = softmax_i(q . k_i / T)``, ``out = h + sum_i p_i v_i + bv``. ``ups`` is ``[..., N, d]``; returns the
    output and the probabilities ``[..., heads, N]``."""
    heads, d = layer.num_heads, hidden.shape[-1]
    split = (heads, d // heads)
    q = (hidden @ layer.query.weight.T + layer.query.bias).unflatten(-1, split)  # [..., H, dh]
    k = (ups @ layer.key.weight.T + layer.key.bias).unflatten(-1, split)  # [..., N, H, dh]
    v = (ups @ layer.value.weight.T).unflatten(-1, split)  # [..., N, H, dh]
    probs = hand_softmax(torch.einsum("...hd,...nhd->...hn", q, k) / layer.temperature)
    context = torch.einsum("...hn,...nhd->...hd", probs, v).flatten(-2) + layer.value.bias
    return (hidden + context if residual else context), probs


def attention_layer(
    randomise: Callable[..., nn.Module], heads: int, temperature: float, n: int = 3, **kwargs: Any
) -> AttentionFusion:
    """A float64 layer with every weight random (N(0, 0.3)), so no part of the maths hides behind a zero or I."""
    return randomise(AttentionFusion(HIDDEN, n, num_heads=heads, temperature=temperature, **kwargs).double(), 5, 0.3)


# ------------------------------------------------------------------------------------------- the config
def test_attention_config_defaults_alias_and_round_trip() -> None:
    config = AttentionFusionConfig()
    assert (config.num_attention_heads, config.attention_dropout) == (1, 0.1)
    assert (config.value_initialization, config.value_regularization) == ("identity", 0.01)
    assert AttentionFusionConfig(fusion_dropout=0.3).attention_dropout == 0.3
    fusion = FusionConfig(fusion_method="attention", adapter_names=("a", "b", "c"), num_attention_heads=4,
                          fusion_dropout=0.2, value_initialization="random", value_regularization=0.5,
                          temperature=2.0)  # fmt: skip
    assert FusionConfig.from_dict(fusion.to_dict()) == fusion
    assert fusion.to_dict()["attention_dropout"] == 0.2 and "fusion_dropout" not in fusion.to_dict()


def test_builder_passes_every_setting_to_the_layer() -> None:
    fusion = FusionConfig(fusion_method="attention", adapter_names=("a", "b", "c"), num_attention_heads=4,
                          attention_dropout=0.2, value_initialization="random", value_regularization=0.5,
                          temperature=2.0)  # fmt: skip
    torch.manual_seed(0)
    layer = FUSION_METHODS.get("attention").build(fusion, FusionPoint("0_ffn", HIDDEN, (0, 1, 2), 3), {})
    assert isinstance(layer, AttentionFusion) and (layer.hidden_size, layer.num_adapters) == (HIDDEN, 3)
    assert (layer.num_heads, layer.head_size, layer.attention_dropout) == (4, 8, 0.2)
    assert (layer.value_regularization, layer.temperature) == (0.5, 2.0)
    value = layer.value.weight.detach()
    assert value.abs().max() < 0.15 and value.diagonal().abs().max() < 0.15  # N(0, 0.02), not the identity
    identity = FUSION_METHODS.get("attention").build(FusionConfig(), FusionPoint("0_ffn", HIDDEN, (0, 1), 2), {})
    torch.testing.assert_close(identity.value.weight.detach(), torch.eye(HIDDEN), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        (dict(num_attention_heads=2.0), TypeError, "num_attention_heads must be an integer; got 2.0 (float)"),
        (dict(num_attention_heads=0), ValueError, "num_attention_heads must be > 0; got 0"),
        (dict(attention_dropout=1.0), ValueError, "attention_dropout must be a number in [0, 1); got 1.0"),
        (dict(fusion_dropout=-0.1), ValueError, "attention_dropout must be a number in [0, 1); got -0.1"),
        (dict(value_initialization="zeros"), ValueError,
         "value_initialization must be one of 'identity', 'random'; got 'zeros'"),
        (dict(value_regularization=-1), ValueError, "value_regularization must be >= 0; got -1"),
    ],
)  # fmt: skip
def test_attention_config_errors_name_the_field_and_value(
    arguments: dict[str, Any], error: type, message: str
) -> None:
    for make in (AttentionFusionConfig, lambda **given: FusionConfig(fusion_method="attention", **given)):
        with pytest.raises(error, match=exactly(message)):
            make(**arguments)


def test_attention_config_accepts_the_edges_of_each_range() -> None:
    config = AttentionFusionConfig(num_attention_heads=1, attention_dropout=0.0, value_initialization="random",
                                   value_regularization=0)  # fmt: skip
    assert (config.num_attention_heads, config.attention_dropout) == (1, 0.0)
    assert (config.value_initialization, config.value_regularization) == ("random", 0)  # 0 disables the regulariser


# -------------------------------------------------------------------------------------------- the layer
def test_layer_defaults_are_the_papers_single_head_at_temperature_one() -> None:
    torch.manual_seed(0)
    layer = AttentionFusion(HIDDEN, 3)
    assert (layer.num_heads, layer.head_size, layer.attention_dropout, layer.temperature) == (1, HIDDEN, 0.1, 1.0)
    assert layer.value_regularization == 0.0 and layer.fold_query is None
    torch.testing.assert_close(layer.value.weight.detach(), torch.eye(HIDDEN), rtol=0, atol=0)
    for linear in (layer.query, layer.key, layer.value):
        torch.testing.assert_close(linear.bias.detach(), torch.zeros(HIDDEN), rtol=0, atol=0)
    for linear in (layer.query, layer.key):
        assert 0.015 < linear.weight.std().item() < 0.025  # N(0, 0.02) over 1024 draws
    with torch.no_grad():
        layer.value.weight.add_(1.0)
    loss = layer.regularization_loss()  # no regulariser unless asked, whatever the value matrix
    assert loss.shape == () and loss.item() == 0.0


@pytest.mark.parametrize("initialization", ["identity", "random"])
def test_reset_parameters_restarts_at_the_identity_unless_told_otherwise(initialization: str) -> None:
    torch.manual_seed(0)
    layer = AttentionFusion(HIDDEN, 2, value_initialization=initialization)
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.fill_(3.0)
    layer.reset_parameters()
    torch.testing.assert_close(layer.value.weight.detach(), torch.eye(HIDDEN), rtol=0, atol=0)
    assert not layer.value.bias.any() and not layer.query.bias.any() and not layer.key.bias.any()
    assert layer.query.weight.abs().max() < 0.15 and layer.key.weight.abs().max() < 0.15
    layer.reset_parameters("random")
    assert layer.value.weight.diagonal().abs().max() < 0.15


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (dict(num_attention_heads=4), (4, 8, 0.1)),
        (dict(num_heads=2, num_attention_heads=2), (2, 16, 0.1)),
        (dict(dropout=0.3), (1, HIDDEN, 0.3)),
        (dict(attention_dropout=0.0, dropout=0.0), (1, HIDDEN, 0.0)),
        (dict(num_heads=8, attention_dropout=0.25), (8, 4, 0.25)),
    ],
)
def test_documented_argument_names_reach_the_layer(arguments: dict[str, Any], expected: tuple) -> None:
    layer = AttentionFusion(HIDDEN, 3, **arguments)
    assert (layer.num_heads, layer.head_size, layer.attention_dropout) == expected


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        (dict(num_heads=2, num_attention_heads=4), TypeError,
         "num_heads=2 and num_attention_heads=4 are the same argument; give one"),
        (dict(attention_dropout=0.1, dropout=0.2), TypeError,
         "attention_dropout=0.1 and dropout=0.2 are the same argument; give one"),
        (dict(num_heads=0), ValueError, "num_attention_heads must be a positive integer; got 0"),
        (dict(num_heads=-2), ValueError, "num_attention_heads must be a positive integer; got -2"),
        (dict(num_heads=True), ValueError, "num_attention_heads must be a positive integer; got True"),
        (dict(num_heads=2.0), ValueError, "num_attention_heads must be a positive integer; got 2.0"),
        (dict(num_attention_heads="2"), ValueError, "num_attention_heads must be a positive integer; got '2'"),
        (dict(num_heads=3), ValueError,
         "num_attention_heads=3 must divide the hidden size 32 (divisors: [1, 2, 4, 8, 16, 32])"),
        (dict(value_initialization="xavier"), ValueError,
         "value_initialization must be one of ('identity', 'random'); got 'xavier'"),
    ],
)  # fmt: skip
def test_layer_errors_state_what_was_given(arguments: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=exactly(message)):
        AttentionFusion(HIDDEN, 3, **arguments)


def test_divisors_in_the_message_are_those_of_the_hidden_size() -> None:
    message = "num_attention_heads=4 must divide the hidden size 6 (divisors: [1, 2, 3, 6])"
    with pytest.raises(ValueError, match=exactly(message)):
        AttentionFusion(6, 2, num_heads=4)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
@pytest.mark.parametrize("weight", [1.0, 0.25])
def test_value_regularization_is_weight_times_squared_distance_to_identity(dtype: torch.dtype, weight: float) -> None:
    layer = AttentionFusion(4, 2, value_regularization=weight).to(dtype)
    assert layer.regularization_loss().item() == 0.0  # identity start
    with torch.no_grad():
        layer.value.weight.copy_(torch.tensor([[2.0, 0, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, -1, 0.5]]))
    loss = layer.regularization_loss()  # ||I - V||^2 = 1 + 1 + 1 + 0.25
    assert loss.dtype == dtype and loss.requires_grad
    assert loss.item() == weight * 3.25


# ------------------------------------------------------------------------------- which score path runs
@pytest.mark.parametrize(
    ("keys", "runs"),
    [((), []), ("a", [(0, 1)]), ("aab", [(0, 2), (2, 3)]), ("abba", [(0, 1), (1, 3), (3, 4)])],
)
def test_runs_are_the_maximal_stretches_of_equal_keys(keys: str, runs: list[tuple[int, int]]) -> None:
    assert _runs(keys) == runs


def pack_of(sizes: tuple[int, ...]) -> AdapterPack:
    return AdapterPack([BottleneckAdapter(HIDDEN, r) for r in sizes], None, HIDDEN)


@pytest.mark.parametrize(
    ("heads", "sizes", "folded"),
    [
        (1, (8, 8, 8), True),  # one head: always folded, whatever R + N
        (1, (40, 40), True),
        (2, (4, 4, 4), True),  # (H - 1)(R + N) = 15 < 32
        (2, (8, 8, 13), False),  # (H - 1)(R + N) = 32, not < 32
        (2, (8, 8, 12), True),  # 31 < 32
        (4, (2, 2, 2), True),  # 3 * 9 = 27 < 32
        (4, (4, 4, 4), False),  # 3 * 15 = 45
    ],
)
def test_the_cheaper_score_path_is_chosen_unless_forced(heads: int, sizes: tuple[int, ...], folded: bool) -> None:
    pack = pack_of(sizes)
    assert AttentionFusion(HIDDEN, len(sizes), num_heads=heads).uses_folded_query(pack) is folded
    for forced in (True, False):
        layer = AttentionFusion(HIDDEN, len(sizes), num_heads=heads, fold_query=forced)
        assert layer.fold_query is forced and layer.uses_folded_query(pack) is forced
        assert ("keys" in layer._products(pack)) is not forced  # the query path keeps K for z_j = K_j^T q_j


# ------------------------------------------------------------------------------ maths: by hand, every path
@pytest.mark.parametrize("lead", [(7,), (2, 5), (2, 2, 3)], ids=["tokens", "batch-seq", "4d"])
@pytest.mark.parametrize("heads", [1, 4])
@pytest.mark.parametrize("fold_query", [None, True, False])
def test_every_path_equals_the_hand_computed_fusion(
    randomise, lead: tuple[int, ...], heads: int, fold_query: bool | None
) -> None:
    """Eval mode with attention_dropout=0.5: dropout must not act outside training, in any path."""
    adapters, _ = temperature_setup()
    layer = attention_layer(randomise, heads, temperature=0.5, attention_dropout=0.5, fold_query=fold_query).eval()
    hidden = torch.randn(*lead, HIDDEN, dtype=DOUBLE)
    ups = hand_contributions(hidden, adapters)
    expected, probs = hand_attention(layer, hidden, torch.stack(ups, dim=-2))
    weights = probs[..., 0, :] if heads == 1 else probs
    assert weights.shape == (*lead, 3) if heads == 1 else (*lead, heads, 3)
    at_one = hand_softmax(probs.log() * 0.5)  # log p = s / T + c: the probabilities at T = 1
    assert (probs - at_one).abs().max() > 0.05  # the temperature matters at this setting

    fast = layer(hidden, adapters, return_weights=True)
    reference = reference_attention(layer, hidden, adapters)
    alone = layer(hidden, [hidden + up for up in ups], return_weights=True)  # outputs with the residual
    for result in (fast, reference, alone):
        torch.testing.assert_close(result.hidden, expected, rtol=1e-9, atol=1e-9)
        assert result.weights.shape == weights.shape
        torch.testing.assert_close(result.weights, weights, rtol=1e-9, atol=1e-9)
    without_residual = reference_attention(layer, hidden, adapters, residual=False).hidden
    torch.testing.assert_close(without_residual, expected - hidden, rtol=1e-9, atol=1e-9)


def test_identity_values_at_uniform_scores_average_the_adapters() -> None:
    """The paper's start: V = I, bv = 0; with equal scores (zero query) the output is h + mean_i up_i."""
    adapters, hidden = temperature_setup()
    layer = AttentionFusion(HIDDEN, 3, attention_dropout=0.0, temperature=3.0).double()
    with torch.no_grad():
        layer.query.weight.zero_()
    out = layer(hidden, adapters, return_weights=True)
    mean = sum(hand_contributions(hidden, adapters)) / 3
    torch.testing.assert_close(out.hidden, hidden + mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.weights, torch.full((2, 5, 3), 1 / 3, dtype=DOUBLE), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------- packing: adapters reading other inputs, their own masks
def hand_lora(adapter: LoraAdapter, x: torch.Tensor) -> torch.Tensor:
    return adapter.scaling * (x @ adapter.lora_A.weight.T @ adapter.lora_B.weight.T)


def mixed_point(
    randomise: Callable[..., nn.Module], lora_dropouts: tuple[float, ...]
) -> tuple[list[Any], torch.Tensor, torch.Tensor]:
    """A random bottleneck adapter reading ``h``, then random LoRA adapters (ranks 3, 5, 2) reading a 12-wide
    input (LoRA's B is no longer zero)."""
    torch.manual_seed(0)
    adapters: list[Any] = [BottleneckAdapter(HIDDEN, 4, activation="tanh").double()]
    adapters += [
        LoraAdapter(12, HIDDEN, (3, 5, 2)[i], scaling=1.5, dropout=p).double() for i, p in enumerate(lora_dropouts)
    ]
    for index, adapter in enumerate(adapters):
        randomise(adapter, 9 + index, 0.3)
    return adapters, torch.randn(2, 5, HIDDEN, dtype=DOUBLE), torch.randn(2, 5, 12, dtype=DOUBLE)


def test_bottleneck_and_lora_adapters_fuse_exactly(randomise) -> None:
    adapters, hidden, module_input = mixed_point(randomise, (0.0, 0.0))
    layer = attention_layer(randomise, heads=2, temperature=2.0, attention_dropout=0.0)
    ups = torch.stack([*hand_contributions(hidden, adapters[:1]), *(hand_lora(a, module_input) for a in adapters[1:])],
                      dim=-2)  # fmt: skip
    expected, probs = hand_attention(layer, hidden, ups)
    fast = layer(hidden, adapters, module_input=module_input, return_weights=True)
    torch.testing.assert_close(fast.hidden, expected, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(fast.weights, probs, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    ("lora_dropouts", "training"),
    [
        ((0.5, 0.3), (False, True, True)),  # the LoRA run splits into one sub-run per adapter
        ((0.5, 0.0, 0.0), (False, True, False, False)),  # a masked adapter, then two sharing one matmul
        ((0.0, 0.0, 0.5), (False, False, False, True)),
    ],
)
def test_lora_input_dropout_draws_one_mask_per_adapter_like_the_reference(
    randomise, lora_dropouts: tuple[float, ...], training: tuple[bool, ...]
) -> None:
    adapters, hidden, module_input = mixed_point(randomise, lora_dropouts)
    for adapter, train in zip(adapters, training):
        adapter.train(train)
    layer = attention_layer(randomise, heads=1, temperature=2.0, n=len(adapters), attention_dropout=0.0)
    torch.manual_seed(1)
    fast = layer(hidden, adapters, module_input=module_input, return_weights=True)
    torch.manual_seed(1)
    reference = reference_attention(layer, hidden, adapters, module_input=module_input)
    torch.testing.assert_close(fast.hidden, reference.hidden, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(fast.weights, reference.weights, rtol=1e-9, atol=1e-9)
    torch.manual_seed(2)
    assert not torch.allclose(layer(hidden, adapters, module_input=module_input).hidden, fast.hidden)  # masks act


def test_parallel_adapters_drop_their_activations_not_their_input(randomise) -> None:
    """Bottleneck dropout acts after the activation, also for adapters reading the feed-forward input."""
    torch.manual_seed(0)
    adapters = [BottleneckAdapter(HIDDEN, r, dropout=p, initialization="bert").double().train()
                for r, p in ((8, 0.3), (4, 0.0), (8, 0.5))]  # fmt: skip
    layer = attention_layer(randomise, heads=4, temperature=0.5, attention_dropout=0.0)
    hidden, ffn_input = torch.randn(2, 2, 5, HIDDEN, dtype=DOUBLE).unbind(0)
    reads = [True, True, False]
    torch.manual_seed(1)
    fast = layer(hidden, adapters, ffn_input, reads_ffn_input=reads, return_weights=True)
    torch.manual_seed(1)
    reference = reference_attention(layer, hidden, adapters, ffn_input, reads_ffn_input=reads)
    torch.testing.assert_close(fast.hidden, reference.hidden, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(fast.weights, reference.weights, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("sizes", [(3, 3, 3), (2, 4, 1), (5,)], ids=["uniform", "mixed", "one"])
def test_expand_repeats_each_adapters_weight_over_its_bottleneck(sizes: tuple[int, ...]) -> None:
    pack = pack_of(sizes)
    weights = torch.arange(2 * 4 * len(sizes), dtype=DOUBLE).view(2, 4, len(sizes))
    expected = torch.cat([weights[..., i : i + 1].expand(2, 4, r) for i, r in enumerate(sizes)], dim=-1)
    torch.testing.assert_close(pack.expand(weights), expected, rtol=0, atol=0)
    torch.testing.assert_close(pack.expand(weights[0, 0]), expected[0, 0], rtol=0, atol=0)
