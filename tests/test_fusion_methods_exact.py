"""Exact behaviour of the weighted fusion method and the shared reference helper: defaults, the documented
aliases, hand-computed weights and outputs (fast path, plain reference and the stand-alone form, for any number
of leading dimensions), the weights over a restricted subset, and the full text of every error message.

Written against the surviving mutants of issue 14 (``tests/MUTATION.md``): each assertion pins a behaviour a
user relies on, with the values worked out here rather than through the library.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from adapter_fusion.adapters import AdapterConfig
from adapter_fusion.fusion import FUSION_METHODS, FusionConfig, FusionPoint, WeightedFusion, add_fusion
from adapter_fusion.fusion.registry import reference_contributions
from adapter_fusion.fusion.weighted import WeightedFusionConfig, reference_weighted
from adapter_fusion.models import AdapterModel
from test_fusion import HIDDEN, hand_contributions, hand_softmax, one_thread, temperature_setup  # noqa: F401

LOGITS = (0.9, -0.4, 0.2)


def exactly(message: str) -> str:
    """A ``match`` pattern for the whole message, taken literally."""
    return f"^{re.escape(message)}$"


# ------------------------------------------------------------------------------------------- the config
@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        (dict(learnable_weights="yes"), TypeError, "learnable_weights must be a bool; got 'yes'"),
        (dict(weight_sharing="global"), ValueError,
         "weight_sharing must be one of 'per_layer', 'shared'; got 'global'"),
        (dict(weight_initialization="xavier"), ValueError,
         "weight_initialization must be one of 'uniform', 'normal'; got 'xavier'"),
        (dict(fixed_weights=(1.0, 2.0)), ValueError,
         "fixed_weights=[1.0, 2.0] is only used with learnable_weights=False; "
         "set learnable_weights=False or drop fixed_weights"),
        (dict(learnable_weights=False, fixed_weights=(0.0, 0.0)), ValueError,
         "fixed_weights must be non-negative numbers with a positive sum; got (0.0, 0.0)"),
        (dict(learnable_weights=False, fixed_weights=(-1.0, 2.0)), ValueError,
         "fixed_weights must be non-negative numbers with a positive sum; got (-1.0, 2.0)"),
        (dict(learnable_weights=False, fixed_weights=()), ValueError,
         "fixed_weights must be non-negative numbers with a positive sum; got ()"),
    ],
)  # fmt: skip
def test_weighted_config_errors_state_field_value_and_fix(settings: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=exactly(message)):
        WeightedFusionConfig(**settings)
    with pytest.raises(error, match=exactly(message)):  # the user's way in: FusionConfig passes the error on
        FusionConfig(fusion_method="weighted", adapter_names=("a", "b"), **settings)


def test_weighted_config_defaults_and_fixed_weights_as_a_list() -> None:
    config = WeightedFusionConfig()
    assert config.learnable_weights is True and config.fixed_weights is None
    assert config.weight_sharing == "per_layer" and config.weight_initialization == "uniform"
    assert WeightedFusionConfig(learnable_weights=False, fixed_weights=[1, 0.5]).fixed_weights == (1, 0.5)


# -------------------------------------------------------------------------------------------- the layer
def test_weighted_layer_defaults_learn_uniform_logits_at_temperature_one() -> None:
    layer = WeightedFusion(HIDDEN, 3)
    assert layer.learnable and layer.temperature == 1.0 and layer.hidden_size == HIDDEN
    assert [name for name, _ in layer.named_parameters()] == ["logits"]
    torch.testing.assert_close(layer.logits.detach(), torch.zeros(3), rtol=0, atol=0)
    with torch.no_grad():
        layer.logits.copy_(torch.tensor(LOGITS))
    torch.testing.assert_close(layer.mixing_weights(), hand_softmax(torch.tensor(LOGITS)))


def test_documented_call_with_the_adapter_count_only_fuses_outputs() -> None:
    layer = WeightedFusion(2, temperature=0.5)
    assert layer.hidden_size is None and layer.num_adapters == 2
    with torch.no_grad():
        layer.logits.copy_(torch.tensor([0.3, -0.2]))
    hidden = torch.randn(2, 4, 6)
    outputs = [hidden + 1.0, hidden - 2.0]  # contributions 1 and -2 everywhere
    w = hand_softmax(torch.tensor([0.3, -0.2]) / 0.5)
    torch.testing.assert_close(layer(hidden, outputs), hidden + w[0] * 1.0 - w[1] * 2.0)


@pytest.mark.parametrize("keyword", ["learnable", "learnable_weights"])
def test_fixed_weights_switch_under_either_name_gives_uniform_buffers(keyword: str) -> None:
    layer = WeightedFusion(HIDDEN, 4, **{keyword: False})
    assert not layer.learnable and not list(layer.parameters())
    torch.testing.assert_close(layer.fixed_weights, torch.full((4,), 0.25), rtol=0, atol=0)
    torch.testing.assert_close(layer.mixing_weights(), torch.full((4,), 0.25), rtol=0, atol=0)


@pytest.mark.parametrize("keyword", ["initialization", "weight_initialization"])
def test_normal_initialization_under_either_name_draws_small_logits(keyword: str) -> None:
    torch.manual_seed(0)
    logits = WeightedFusion(HIDDEN, 4096, **{keyword: "normal"}).logits.detach()
    assert 0.018 < logits.std().item() < 0.022  # N(0, 0.02): 4096 draws put the std within ~1% of it
    assert abs(logits.mean().item()) < 0.002
    uniform = WeightedFusion(HIDDEN, 3, **{keyword: "uniform"}).logits.detach()
    torch.testing.assert_close(uniform, torch.zeros(3), rtol=0, atol=0)


def test_fixed_weights_become_a_float32_buffer_whatever_the_container() -> None:
    layer = WeightedFusion(HIDDEN, 2, learnable=False, fixed_weights=np.array([3.0, 1.0]))  # float64 array
    assert layer.fixed_weights.dtype == torch.float32
    torch.testing.assert_close(layer.fixed_weights, torch.tensor([0.75, 0.25]), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        (dict(learnable=True, learnable_weights=False), TypeError,
         "learnable=True and learnable_weights=False are the same argument; give one"),
        (dict(initialization="uniform", weight_initialization="normal"), TypeError,
         "initialization='uniform' and weight_initialization='normal' are the same argument; give one"),
        (dict(initialization="xavier"), ValueError,
         "weight_initialization must be one of ('uniform', 'normal'); got 'xavier'"),
        (dict(fixed_weights=(1.0, 1.0)), ValueError,
         "fixed_weights is only used with learnable weights off (learnable_weights=False)"),
        (dict(logits=nn.Parameter(torch.zeros(3))), ValueError, "logits must have shape (2,); got (3,)"),
        (dict(learnable=False, fixed_weights=(0.0, 0.0)), ValueError,
         "fixed_weights must be 2 non-negative numbers with a positive sum; got (0.0, 0.0)"),
        (dict(learnable=False, fixed_weights=(-1.0, 2.0)), ValueError,
         "fixed_weights must be 2 non-negative numbers with a positive sum; got (-1.0, 2.0)"),
        (dict(learnable=False, fixed_weights=(1.0, 1.0, 1.0)), ValueError,
         "fixed_weights must be 2 non-negative numbers with a positive sum; got (1.0, 1.0, 1.0)"),
    ],
)  # fmt: skip
def test_weighted_layer_errors_state_what_was_given(arguments: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=exactly(message)):
        WeightedFusion(HIDDEN, 2, **arguments)


# ---------------------------------------------------------------------- maths: fast, reference, stand-alone
@pytest.mark.parametrize("lead", [(7,), (2, 5), (2, 2, 3)], ids=["tokens", "batch-seq", "4d"])
@pytest.mark.parametrize("learnable", [True, False], ids=["softmax", "fixed"])
def test_weighted_paths_equal_the_hand_computed_mixture(lead: tuple[int, ...], learnable: bool) -> None:
    adapters, _ = temperature_setup()
    hidden = torch.randn(*lead, HIDDEN, dtype=torch.float64)
    if learnable:
        layer = WeightedFusion(HIDDEN, 3, temperature=0.5).double()
        with torch.no_grad():
            layer.logits.copy_(torch.tensor(LOGITS))
        w = hand_softmax(torch.tensor(LOGITS, dtype=torch.float64) / 0.5)
    else:  # the temperature never touches fixed weights
        layer = WeightedFusion(HIDDEN, 3, learnable=False, fixed_weights=(1.0, 2.0, 5.0), temperature=0.5).double()
        w = torch.tensor([0.125, 0.25, 0.625], dtype=torch.float64)
    ups = hand_contributions(hidden, adapters)
    mixed = sum(w[i] * up for i, up in enumerate(ups))
    expected_weights = w.expand(*lead, 3)

    fast = layer(hidden, adapters, return_weights=True)
    reference = reference_weighted(layer, hidden, adapters)
    alone = layer(hidden, [hidden + up for up in ups], return_weights=True)  # outputs include the residual
    for result in (fast, reference, alone):
        torch.testing.assert_close(result.hidden, hidden + mixed)
        assert result.weights.shape == (*lead, 3)
        torch.testing.assert_close(result.weights, expected_weights)
    torch.testing.assert_close(reference_weighted(layer, hidden, adapters, residual=False).hidden, mixed)


def test_reference_contributions_stack_adapters_before_the_hidden_dimension() -> None:
    adapters, _ = temperature_setup()
    hidden = torch.randn(7, HIDDEN, dtype=torch.float64)
    stacked = reference_contributions(hidden, adapters, None, None)
    assert stacked.shape == (7, 3, HIDDEN)
    for i, up in enumerate(hand_contributions(hidden, adapters)):
        torch.testing.assert_close(stacked[:, i], up)


def test_reference_without_the_input_a_parallel_adapter_reads_says_so() -> None:
    adapters, hidden = temperature_setup()
    layer = WeightedFusion(HIDDEN, 3).double()
    message = "a parallel adapter needs ffn_input and a LoRA adapter module_input"
    with pytest.raises(ValueError, match=exactly(message)):
        reference_weighted(layer, hidden, adapters, None, reads_ffn_input=[False, True, False])


# ------------------------------------------------------------------------------------- builder and subsets
@pytest.mark.parametrize("sharing", ["per_layer", "shared"])
def test_builder_passes_initialization_temperature_and_the_points_fixed_weights(sharing: str) -> None:
    build = FUSION_METHODS.get("weighted").build
    names = ("a", "b", "c")
    config = FusionConfig(fusion_method="weighted", adapter_names=names, weight_sharing=sharing,
                          weight_initialization="normal", temperature=2.0)  # fmt: skip
    torch.manual_seed(0)
    layer = build(config, FusionPoint("0_ffn", 8, (0, 1, 2), 3), {})
    assert layer.temperature == 2.0 and layer.hidden_size == 8 and layer.num_adapters == 3
    assert (layer.logits != 0).all() and layer.logits.abs().max() < 0.1  # N(0, 0.02), not zeros

    fixed = FusionConfig(fusion_method="weighted", adapter_names=names, learnable_weights=False,
                         fixed_weights=(1.0, 2.0, 5.0))  # fmt: skip
    layer = build(fixed, FusionPoint("1_ffn", 8, (0, 2), 3), {})  # a point holding a and c only
    torch.testing.assert_close(layer.mixing_weights(), torch.tensor([1 / 6, 5 / 6]))


def test_restricted_fusion_renormalises_fixed_weights_over_the_subset(make_model, randomise) -> None:
    model = AdapterModel(make_model("bert", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    for i in range(3):
        model.add_adapter(f"a{i}", AdapterConfig(bottleneck_size=4), activate=False)
        randomise(model.adapters.adapters[f"a{i}"], seed=10 + i, std=0.3)
    config = FusionConfig(fusion_method="weighted", adapter_names=("a0", "a1", "a2"), learnable_weights=False,
                          fixed_weights=(1.0, 2.0, 3.0))  # fmt: skip
    fuse = add_fusion(model, config)
    embeds = torch.randn(2, 5, HIDDEN)
    with torch.no_grad(), fuse.restricted(["a0", "a2"]), fuse.record_weights() as weights:
        restricted = model.base(inputs_embeds=embeds).last_hidden_state
    assert weights  # every fused point recorded [batch, seq, 2] weights of a0 and a2 alone: (1, 3) / 4
    for recorded in weights.values():
        torch.testing.assert_close(recorded, torch.tensor([0.25, 0.75]).expand(2, 5, 2))
    # the same as a fusion of a0 and a2 with fixed weights (1, 3)
    add_fusion(model, FusionConfig(fusion_method="weighted", adapter_names=("a0", "a2"), learnable_weights=False,
                                   fixed_weights=(1.0, 3.0)))  # fmt: skip
    with torch.no_grad():
        torch.testing.assert_close(model.base(inputs_embeds=embeds).last_hidden_state, restricted)
