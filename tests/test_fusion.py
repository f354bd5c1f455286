"""Fusion methods: fast path == plain reference, identity at start, normalised weights, no state in forward,
the memo of weight products, the ``Fuse`` composition on a tiny BERT, and bad inputs.

Every shared test is parametrised over ``FUSION_METHODS``; what differs between methods comes from their
declared capabilities (``FusionMethod.single_adapter_identity``, ``FusionLayer.normalized``/``num_heads``),
never from an ``if`` on the method's name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from adapter_fusion.adapters import AdapterConfig, BottleneckAdapter
from adapter_fusion.fusion import (
    FUSION_METHODS,
    AttentionFusion,
    Fuse,
    FusionConfig,
    FusionLayer,
    FusionPoint,
    WeightedFusion,
    add_fusion,
    build_fusion,
    remove_fusion,
    train_fusion,
)
from adapter_fusion.fusion.composition import fusion_input
from adapter_fusion.models import AdapterModel
from adapter_fusion.models.manager import AdapterManager
from adapter_fusion.models.points import point_key
from conftest import method_settings

METHODS = FUSION_METHODS.names()
HIDDEN = 32
# Adapters of different shapes, so the packed path meets mixed sizes, activations and scalings.
VARIANTS = (
    dict(bottleneck_size=8),
    dict(bottleneck_size=4, activation="gelu", scaling=2.0),
    dict(bottleneck_size=8, activation="tanh"),
    dict(bottleneck_size=6),
    dict(bottleneck_size=8),
)


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Any:
    """Tiny tensors gain nothing from intra-op threads, and on a busy 2-core machine the thread hand-offs cost
    ~8x the whole file's run time (40 s against 5 s measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------------- helpers
def adapter_configs(n: int, placement: str, residual: bool = True) -> list[AdapterConfig]:
    """``n`` adapter configs; placement ``"mixed"`` alternates parallel and pfeiffer adapters."""
    configs = []
    for i in range(n):
        where = ("parallel", "pfeiffer")[i % 2] if placement == "mixed" else placement
        configs.append(AdapterConfig(placement=where, residual=residual, **VARIANTS[i]))  # type: ignore[arg-type]
    return configs


def fused_model(
    make_model: Callable[..., nn.Module],
    randomise: Callable[..., nn.Module],
    configs: list[AdapterConfig],
    dtype: torch.dtype = torch.float64,
) -> AdapterModel:
    """Tiny BERT (no dropout) with adapters ``a0..a{n-1}`` holding random non-zero weights."""
    base = make_model("bert", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0).to(dtype)
    model = AdapterModel(base)
    for i, config in enumerate(configs):
        model.add_adapter(f"a{i}", config, activate=False)
        randomise(model.adapters.adapters[f"a{i}"], seed=10 + i, std=0.3)
    return model


def fusion_config(method: str, n: int, **overrides: Any) -> FusionConfig:
    settings: dict[str, Any] = dict(fusion_method=method, adapter_names=tuple(f"a{i}" for i in range(n)))
    settings.update(attention_dropout=0.0, top_k=min(2, n))  # sparse fusion: k <= N
    settings.update(overrides)
    return FusionConfig(**method_settings(method, **settings))


def inputs(dtype: torch.dtype = torch.float64, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    embeds = torch.randn(2, 5, HIDDEN, generator=generator).to(dtype)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    return {"inputs_embeds": embeds, "attention_mask": mask}


def run(model: AdapterModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model.base(**batch, return_dict=True).last_hidden_state


def reference_composition(fuse: Fuse) -> Callable[..., torch.Tensor]:
    """A composition running the method's plain reference at every fused point (residual rule re-derived here;
    LoRA adapters read ``manager.module_input``)."""
    reference = FUSION_METHODS.get(fuse.config.fusion_method).reference  # type: ignore[union-attr]

    def compose(manager: AdapterManager, layer: int, location: str, hidden: torch.Tensor, ffn: Any) -> torch.Tensor:
        key = point_key(layer, location)
        if key not in fuse.layers:
            return hidden
        names = fuse.point_adapters[key]
        adapters = [manager.adapter_module(name, layer, location) for name in names]
        parallel = [getattr(manager.configs[name], "placement", None) == "parallel" for name in names]
        residual = parallel[0] or getattr(manager.configs[names[0]], "residual", True)  # LoRA: always
        # the query / adapter input and the residual (differ for LayerNorm-before adapters, the pfeiffer default)
        source, residual_input = fusion_input(manager, names, layer, location, hidden)
        inner = residual and source is residual_input
        out = reference(
            fuse.layers[key], source, adapters, ffn, reads_ffn_input=parallel, residual=inner,
            module_input=manager.module_input,
        )  # fmt: skip
        return out.hidden + residual_input if residual and not inner else out.hidden

    return compose


def use(model: AdapterModel, composition: Any) -> None:
    """Swap the manager's composition (remove_fusion drops a module-valued one so a function can follow)."""
    remove_fusion(model)
    model.adapters.composition = composition


def perturb_(module: nn.Module, seed: int = 3, std: float = 0.3) -> None:
    """Add noise to every parameter (so a fusion is far from its symmetric start)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator).to(parameter) * std)


def grads(model: AdapterModel, fuse: Fuse, embeds: torch.Tensor) -> dict[str, torch.Tensor]:
    named = {
        **dict(model.base.named_parameters()),
        **dict(model.adapters.adapters.named_parameters(prefix="adapters")),
    }
    named.update(fuse.named_parameters(prefix="fusion"))
    # A parameter the fast path never touches gets a zero (the key bias cancels in the softmax).
    found = {n: torch.zeros_like(p) if p.grad is None else p.grad.clone() for n, p in named.items() if p.requires_grad}
    assert embeds.grad is not None
    found["inputs_embeds"] = embeds.grad.clone()
    return found


# ---------------------------------------------------------------------------------------------------- registry
def test_every_method_is_a_fusion_layer_with_a_reference() -> None:
    assert set(METHODS) >= {"attention", "weighted", "gating"}
    for name, method in FUSION_METHODS.items():
        assert issubclass(method.layer_class, FusionLayer), name
        assert callable(method.reference) and callable(method.build), name
        FusionConfig(fusion_method=name, **method.single_adapter_identity)  # the overrides are valid settings


# ------------------------------------------------------------------------------------------- fast == reference
@pytest.mark.parametrize("n", [1, 2, 5])
@pytest.mark.parametrize("heads", [1, 4])
@pytest.mark.parametrize("placement", ["pfeiffer", "houlsby", "parallel", "mixed"])
@pytest.mark.parametrize("method", METHODS)
def test_fast_path_equals_reference_with_gradients(make_model, randomise, method, placement, heads, n) -> None:
    model = fused_model(make_model, randomise, adapter_configs(n, placement))
    fuse = add_fusion(model, fusion_config(method, n, num_attention_heads=heads))
    assert_fast_equals_reference_with_gradients(model, fuse)


def assert_fast_equals_reference_with_gradients(model: AdapterModel, fuse: Fuse) -> dict[str, torch.Tensor]:
    """Perturb the fusion, train mode, adapters unfrozen: the fast path's output and every gradient equal the
    reference's. Returns the fast path's gradients."""
    perturb_(fuse)
    model.train()
    for name in fuse.adapter_names:
        model.adapters.unfreeze(name)
    results = []
    for composition in (fuse, reference_composition(fuse)):
        model.zero_grad(set_to_none=True)
        fuse.zero_grad(set_to_none=True)
        batch = inputs()
        batch["inputs_embeds"].requires_grad_(True)
        use(model, composition)
        out = run(model, batch)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        results.append((out.detach(), grads(model, fuse, batch["inputs_embeds"])))
    (fast, fast_grads), (ref, ref_grads) = results
    torch.testing.assert_close(fast, ref)
    assert set(fast_grads) == set(ref_grads)
    assert any(name.startswith("fusion.") for name in fast_grads)  # fusion weights got gradients
    assert any(name.startswith("adapters.") for name in fast_grads)
    for name in fast_grads:
        torch.testing.assert_close(fast_grads[name], ref_grads[name], msg=lambda m, k=name: f"{k}: {m}")
    return fast_grads


@pytest.mark.parametrize("method", METHODS)
def test_fast_path_equals_reference_in_eval_float32(make_model, randomise, method) -> None:
    model = fused_model(make_model, randomise, adapter_configs(3, "houlsby"), dtype=torch.float32)
    fuse = add_fusion(model, fusion_config(method, 3, num_attention_heads=4))
    perturb_(fuse)
    model.eval()
    batch = inputs(torch.float32)
    with torch.no_grad():
        fast = run(model, batch)
        use(model, reference_composition(fuse))
        ref = run(model, batch)
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-5)


def test_attention_dropout_matches_reference_under_the_same_seed() -> None:
    torch.manual_seed(0)
    adapters = [BottleneckAdapter(HIDDEN, 8, initialization="bert").double() for _ in range(3)]
    layer = AttentionFusion(HIDDEN, 3, num_heads=2, attention_dropout=0.5).double().train()
    hidden = torch.randn(2, 5, HIDDEN, dtype=torch.float64)
    torch.manual_seed(1)
    fast = layer(hidden, adapters, return_weights=True)
    torch.manual_seed(1)
    ref = FUSION_METHODS.get("attention").reference(layer, hidden, adapters)
    torch.testing.assert_close(fast.hidden, ref.hidden)
    torch.testing.assert_close(fast.weights, ref.weights)
    assert (fast.weights == 0).any()  # dropout did act


@pytest.mark.parametrize("heads", [1, 4])
@pytest.mark.parametrize("fold_query", [True, False])
def test_both_attention_score_paths_equal_reference(heads: int, fold_query: bool) -> None:
    torch.manual_seed(0)
    adapters = [BottleneckAdapter(HIDDEN, r, initialization="bert").double() for r in (8, 4, 8)]
    layer = AttentionFusion(HIDDEN, 3, num_heads=heads, attention_dropout=0.0, fold_query=fold_query).double()
    perturb_(layer)
    hidden = torch.randn(2, 5, HIDDEN, dtype=torch.float64)
    fast = layer(hidden, adapters, return_weights=True)
    ref = FUSION_METHODS.get("attention").reference(layer, hidden, adapters)
    torch.testing.assert_close(fast.hidden, ref.hidden)
    torch.testing.assert_close(fast.weights, ref.weights)


# ------------------------------------------------------------------------------ temperature, by hand (T != 1)
def hand_contributions(hidden: torch.Tensor, adapters: list[BottleneckAdapter]) -> list[torch.Tensor]:
    """``up_i = s_i (U_i act_i(D_i h + d_i) + c_i)`` written out from the weights (not through the library)."""
    ups = []
    for adapter in adapters:
        bottleneck = adapter.activation(hidden @ adapter.down.weight.T + adapter.down.bias)
        ups.append(adapter.scaling * (bottleneck @ adapter.up.weight.T + adapter.up.bias))
    return ups


def hand_softmax(scores: torch.Tensor) -> torch.Tensor:
    exp = (scores - scores.amax(-1, keepdim=True)).exp()
    return exp / exp.sum(-1, keepdim=True)


def temperature_setup(num_heads: int = 1) -> tuple[list[BottleneckAdapter], torch.Tensor]:
    torch.manual_seed(0)
    adapters = [
        BottleneckAdapter(HIDDEN, r, activation=act, scaling=s, initialization="bert").double()
        for r, act, s in ((8, "relu", 1.0), (4, "tanh", 2.0), (8, "gelu", 0.5))
    ]
    for index, adapter in enumerate(adapters):
        perturb_(adapter, seed=20 + index, std=0.3)
    return adapters, torch.randn(2, 5, HIDDEN, dtype=torch.float64)


@pytest.mark.parametrize("temperature", [0.5, 3.0])
@pytest.mark.parametrize("heads", [1, 4])
@pytest.mark.parametrize("fold_query", [True, False])
def test_attention_divides_scores_by_temperature(temperature: float, heads: int, fold_query: bool) -> None:
    """softmax(q . k_i / T) per head against a hand computation, at T != 1 (T = 1 hides * T vs / T)."""
    adapters, hidden = temperature_setup()
    layer = AttentionFusion(
        HIDDEN, 3, num_heads=heads, attention_dropout=0.0, fold_query=fold_query, temperature=temperature
    ).double()
    perturb_(layer, seed=5, std=0.3)
    fast = layer(hidden, adapters, return_weights=True)

    ups = torch.stack(hand_contributions(hidden, adapters), dim=-2)  # [b, s, N, d]
    dh = HIDDEN // heads
    q = (hidden @ layer.query.weight.T + layer.query.bias).view(2, 5, 1, heads, dh)
    k = (ups @ layer.key.weight.T + layer.key.bias).view(2, 5, 3, heads, dh)
    v = (ups @ layer.value.weight.T).view(2, 5, 3, heads, dh)
    probs = hand_softmax((q * k).sum(-1).transpose(-1, -2) / temperature)  # [b, s, heads, N]
    context = torch.einsum("bshn,bsnhd->bshd", probs, v).reshape(2, 5, HIDDEN) + layer.value.bias
    torch.testing.assert_close(fast.hidden, hidden + context)
    torch.testing.assert_close(fast.weights, probs.squeeze(-2) if heads == 1 else probs)
    at_one = hand_softmax((q * k).sum(-1).transpose(-1, -2))
    assert (probs - at_one).abs().max() > 0.05  # the temperature matters at this setting


@pytest.mark.parametrize("temperature", [0.5, 3.0])
def test_weighted_fusion_divides_logits_by_temperature(temperature: float) -> None:
    adapters, hidden = temperature_setup()
    layer = WeightedFusion(HIDDEN, 3, temperature=temperature).double()
    with torch.no_grad():
        layer.logits.copy_(torch.tensor([0.9, -0.4, 0.2]))
    out = layer(hidden, adapters, return_weights=True)
    w = hand_softmax(torch.tensor([0.9, -0.4, 0.2], dtype=torch.float64) / temperature)
    expected = hidden + sum(w[i] * up for i, up in enumerate(hand_contributions(hidden, adapters)))
    torch.testing.assert_close(out.hidden, expected)
    torch.testing.assert_close(out.weights, w.expand(2, 5, 3))


@pytest.mark.parametrize("temperature", [0.5, 3.0])
@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_gating_fusion_divides_logits_by_temperature(temperature: float, activation: str) -> None:
    from adapter_fusion.fusion import GatingFusion

    adapters, hidden = temperature_setup()
    layer = GatingFusion(HIDDEN, 3, activation=activation, temperature=temperature).double()
    perturb_(layer, seed=6, std=0.3)
    out = layer(hidden, adapters, return_weights=True)
    logits = (hidden @ layer.gate.weight.T + layer.gate.bias) / temperature
    gates = hand_softmax(logits) if activation == "softmax" else 1 / (1 + (-logits).exp())
    expected = hidden + sum(gates[..., i : i + 1] * up for i, up in enumerate(hand_contributions(hidden, adapters)))
    torch.testing.assert_close(out.hidden, expected)
    torch.testing.assert_close(out.weights, gates)
    torch.testing.assert_close(layer.gates(logits * temperature), gates)  # [batch, seq, N] logits: over N
    # the plain reference, and both on flat [tokens, hidden] input (the stand-alone form takes [..., hidden])
    reference = FUSION_METHODS.get("gating").reference
    flat = hidden.reshape(10, HIDDEN)
    for h, want, g in ((hidden, expected, gates), (flat, expected.reshape(10, HIDDEN), gates.reshape(10, 3))):
        ref = reference(layer, h, adapters)
        torch.testing.assert_close(ref.hidden, want)
        torch.testing.assert_close(ref.weights, g)
        torch.testing.assert_close(layer(h, adapters).hidden, want)


def test_gating_layer_defaults_aliases_and_builder() -> None:
    from adapter_fusion.fusion import GatingFusion

    default = GatingFusion(HIDDEN, 3)
    assert default.activation == "sigmoid" and default.gate.bias is not None
    assert not default.gate.weight.any() and not default.gate.bias.any()  # equal gates at the start
    assert GatingFusion(HIDDEN, 3, gate_activation="softmax").activation == "softmax"
    assert GatingFusion(HIDDEN, 3, activation="softmax", gate_activation="softmax").activation == "softmax"
    assert GatingFusion(HIDDEN, 3, bias=False).gate.bias is None
    assert GatingFusion(HIDDEN, 3, gate_bias=False).gate.bias is None
    config = FusionConfig(fusion_method="gating", gate_activation="softmax", gate_bias=False, temperature=2.0)
    built = FUSION_METHODS.get("gating").build(config, FusionPoint("0_ffn", HIDDEN, (0, 1, 2), 3), {})
    assert (built.activation, built.gate.bias, built.temperature) == ("softmax", None, 2.0)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(activation="sigmoid", gate_activation="softmax"), TypeError,
         "activation='sigmoid' and gate_activation='softmax' are the same argument; give one"),
        (dict(bias=True, gate_bias=False), TypeError, "bias=True and gate_bias=False are the same argument; give one"),
        (dict(activation="relu"), ValueError, r"gate_activation must be one of \('sigmoid', 'softmax'\); got 'relu'"),
    ],
)  # fmt: skip
def test_gating_layer_errors(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    from adapter_fusion.fusion import GatingFusion

    with pytest.raises(error, match=match):
        GatingFusion(HIDDEN, 3, **kwargs)


def test_per_adapter_dropout_draws_like_the_reference() -> None:
    """Adapters with their own dropout rates: the packed path draws one mask per adapter, in order."""
    torch.manual_seed(0)
    adapters = [
        BottleneckAdapter(HIDDEN, 8, dropout=p, initialization="bert").double().train() for p in (0.0, 0.3, 0.0, 0.5)
    ]
    point = FusionPoint("0_ffn", HIDDEN, (0, 1, 2, 3), 4)
    layer = FUSION_METHODS.get("gating").build(FusionConfig(fusion_method="gating"), point, {})
    layer.double().train()
    perturb_(layer)
    hidden = torch.randn(2, 5, HIDDEN, dtype=torch.float64)
    torch.manual_seed(1)
    fast = layer(hidden, adapters).hidden
    torch.manual_seed(1)
    ref = FUSION_METHODS.get("gating").reference(layer, hidden, adapters).hidden
    torch.testing.assert_close(fast, ref)
    torch.manual_seed(2)
    assert not torch.allclose(layer(hidden, adapters).hidden, fast)  # the masks did act


@pytest.mark.parametrize("method", METHODS)
def test_residual_false_adapters_fuse_without_residual(make_model, randomise, method) -> None:
    model = fused_model(make_model, randomise, adapter_configs(2, "pfeiffer", residual=False))
    fuse = add_fusion(model, fusion_config(method, 2))
    perturb_(fuse)
    batch = inputs()
    with torch.no_grad():
        fast = run(model, batch)
        use(model, reference_composition(fuse))
        ref = run(model, batch)
    torch.testing.assert_close(fast, ref)


# ------------------------------------------------------------------------------------------------ invariants
@pytest.mark.parametrize("placement", ["pfeiffer", "houlsby", "parallel"])
@pytest.mark.parametrize("method", METHODS)
def test_fusing_one_adapter_equals_that_adapter(make_model, randomise, method, placement) -> None:
    model = fused_model(make_model, randomise, adapter_configs(1, placement))
    batch = inputs()
    with torch.no_grad():
        model.adapters.set_active("a0")
        alone = run(model, batch)
        add_fusion(model, fusion_config(method, 1, **FUSION_METHODS.get(method).single_adapter_identity))
        model.adapters.set_active()
        fused = run(model, batch)
    assert not torch.allclose(alone, run_base(model, batch))  # the adapter does something
    torch.testing.assert_close(fused, alone)


def run_base(model: AdapterModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with model.adapters.disable():
        return run(model, batch)


def test_sigmoid_gates_start_at_half_the_adapter(make_model, randomise) -> None:
    """Sigmoid gates start at 0.5: fusing one adapter gives ``h + up / 2`` (the adapter at half scaling)."""
    model = fused_model(make_model, randomise, adapter_configs(1, "houlsby"))
    batch = inputs()
    with torch.no_grad():
        for adapter in model.adapters.adapters["a0"].values():
            adapter.scaling = 0.5
        model.adapters.set_active("a0")
        half = run(model, batch)
        for adapter in model.adapters.adapters["a0"].values():
            adapter.scaling = 1.0
        add_fusion(model, fusion_config("gating", 1, gate_activation="sigmoid"))
        fused = run(model, batch)
    torch.testing.assert_close(fused, half)


@pytest.mark.parametrize("method", METHODS)
def test_collected_weights_have_the_right_shapes_and_normalise(make_model, randomise, method) -> None:
    model = fused_model(make_model, randomise, adapter_configs(3, "houlsby"))
    fuse = add_fusion(model, fusion_config(method, 3, num_attention_heads=4))
    perturb_(fuse)
    batch = inputs()
    with torch.no_grad(), fuse.record_weights() as weights:
        out = run(model, batch)
    assert not fuse.collect_weights
    assert sorted(weights) == sorted(point_key(i, loc) for i in range(2) for loc in ("attention", "ffn"))
    for key, tensor in weights.items():
        layer = fuse.layers[key]
        heads = () if layer.num_heads == 1 else (layer.num_heads,)
        assert tensor.shape == (2, 5, *heads, 3), key
        assert (tensor >= 0).all()
        if layer.normalized:
            torch.testing.assert_close(tensor.sum(-1), torch.ones_like(tensor.sum(-1)))
    with torch.no_grad():
        torch.testing.assert_close(run(model, batch), out)  # collecting changes nothing


@pytest.mark.parametrize("method", METHODS)
def test_forward_changes_no_state_and_temperature_is_set_explicitly(make_model, randomise, method) -> None:
    model = fused_model(make_model, randomise, adapter_configs(2, "pfeiffer"))
    fuse = add_fusion(model, fusion_config(method, 2, temperature=2.0, temperature_min=1.0, temperature_decay=0.5))
    perturb_(fuse)
    batch = inputs()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for mode in ("train", "eval"):
        model.train(mode == "train")
        first, second = run(model, batch).detach(), run(model, batch).detach()
        torch.testing.assert_close(first, second, rtol=0, atol=0)
        assert all(layer.temperature == 2.0 for layer in fuse.layers.values())
    after = model.state_dict()
    assert list(after) == list(before) and all(torch.equal(before[k], after[k]) for k in before)
    with torch.no_grad():
        fuse.set_temperature(fuse.config.temperature_at(10))  # the trainer's schedule: 2 - 0.5 * 10 -> floor 1
        cooler = run(model, batch)
        fuse.set_temperature(2.0)
        again = run(model, batch)
    assert all(layer.temperature == 2.0 for layer in fuse.layers.values())
    assert not torch.allclose(cooler, first)
    torch.testing.assert_close(again, first)


def test_temperature_schedule() -> None:
    config = FusionConfig(temperature=50.0, temperature_min=1.0, temperature_decay=1.0)
    assert [config.temperature_at(s) for s in (0, 10, 49, 100)] == [50.0, 40.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="temperature"):
        AttentionFusion(HIDDEN, 2).set_temperature(0.0)


def test_value_regularization_sums_over_layers(make_model, randomise) -> None:
    model = fused_model(make_model, randomise, adapter_configs(2, "houlsby"))
    fuse = add_fusion(model, fusion_config("attention", 2, value_regularization=0.5))
    assert fuse.regularization_loss().item() == 0.0  # identity start
    perturb_(fuse)
    eye = torch.eye(HIDDEN, dtype=torch.float64)
    expected = sum(0.5 * (eye - layer.value.weight).pow(2).sum() for layer in fuse.layers.values())
    torch.testing.assert_close(fuse.regularization_loss(), expected)
    assert len(fuse.layers) == 4 and fuse.regularization_loss().requires_grad


def test_fusion_layers_choose_points_and_empty_is_the_base_model(make_model, randomise) -> None:
    model = fused_model(make_model, randomise, adapter_configs(2, "houlsby"))
    fuse = build_fusion(fusion_config("attention", 2, fusion_layers=(1,)), model.adapters)
    assert sorted(fuse.layers) == ["1_attention", "1_ffn"]
    add_fusion(model, fusion_config("attention", 2, fusion_layers=()))
    batch = inputs()
    with torch.no_grad():
        torch.testing.assert_close(run(model, batch), run_base(model, batch), rtol=0, atol=0)
        remove_fusion(model)
        assert model.adapters.composition is None


def test_points_holding_some_adapters_fuse_those(make_model, randomise) -> None:
    model = fused_model(make_model, randomise, [AdapterConfig(bottleneck_size=4), AdapterConfig(layers=(1,))])
    fuse = build_fusion(fusion_config("gating", 2), model.adapters)
    assert fuse.point_adapters == {"0_ffn": ("a0",), "1_ffn": ("a0", "a1")}
    with pytest.raises(ValueError, match="weight_sharing='shared'"):
        build_fusion(fusion_config("weighted", 2, weight_sharing="shared"), model.adapters)


def test_shared_weights_are_one_parameter(make_model, randomise) -> None:
    model = fused_model(make_model, randomise, adapter_configs(2, "houlsby"))
    fuse = add_fusion(model, fusion_config("weighted", 2, weight_sharing="shared", weight_initialization="normal"))
    logits = {id(layer.logits) for layer in fuse.layers.values()}
    assert len(logits) == 1 and len(list(fuse.parameters())) == 1


def test_fixed_weights_are_normalised_buffers(make_model, randomise) -> None:
    model = fused_model(make_model, randomise, adapter_configs(2, "pfeiffer"))
    config = fusion_config("weighted", 2, learnable_weights=False, fixed_weights=(3.0, 1.0))
    fuse = add_fusion(model, config)
    assert not list(fuse.parameters())
    for layer in fuse.layers.values():
        assert isinstance(layer, WeightedFusion)
        torch.testing.assert_close(layer.mixing_weights(), torch.tensor([0.75, 0.25], dtype=torch.float64))


def test_train_fusion_freezes_adapters_and_trainer_sees_fusion_weights(make_model, randomise) -> None:
    from adapter_fusion.training.trainer import parameter_kind

    model = fused_model(make_model, randomise, adapter_configs(2, "pfeiffer"))
    fuse = add_fusion(model, fusion_config("attention", 2))
    model.freeze_base()
    train_fusion(model, fuse)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".composition.layers." in n for n in trainable)
    kinds = parameter_kind(model)
    assert {kinds[n] for n in trainable} == {"fusion"}
    train_fusion(model, fuse, freeze_adapters=False)
    assert model.adapters.adapters["a0"]["0_ffn"].down.weight.requires_grad


# ------------------------------------------------------------------------------------------ memo of products
def test_eval_memo_is_reused_and_invalidated_by_weight_updates(make_model, randomise) -> None:
    model = fused_model(make_model, randomise, adapter_configs(2, "pfeiffer"))
    fuse = add_fusion(model, fusion_config("attention", 2))
    perturb_(fuse)
    model.eval()
    layer = fuse.layers["0_ffn"]
    batch = inputs()
    with torch.no_grad():
        first = run(model, batch)
        misses = layer._products_cache.misses
        torch.testing.assert_close(run(model, batch), first, rtol=0, atol=0)
        assert layer._products_cache.misses == misses and layer._products_cache.hits >= 1
        for module in (layer.key, model.adapters.adapter_module("a1", 0, "ffn").up):
            module.weight.mul_(1.5)  # in-place update: a new _version
            updated = run(model, batch)
            use(model, reference_composition(fuse))
            torch.testing.assert_close(updated, run(model, batch))
            use(model, fuse)
    # eval mode with grad enabled and trainable weights: no memo (a stale graph would break backward)
    hits = layer._products_cache.hits
    for _ in range(2):
        run(model, batch).sum().backward()
    assert layer._products_cache.hits == hits and layer.query.weight.grad is not None


# --------------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (dict(fusion_method="average"), r"fusion_method must be one of 'attention', 'gating', 'sparse', 'weighted'"),
        (dict(num_attention_heads=0), "num_attention_heads"),
        (dict(attention_dropout=1.0), "attention_dropout"),
        (dict(value_initialization="zeros"), "value_initialization"),
        (dict(temperature_min=2.0), "temperature_min must be <= temperature"),
        (dict(fusion_method="weighted", weight_sharing="global"), "weight_sharing must be one of"),
        (dict(fusion_method="gating", gate_activation="relu"), "gate_activation must be one of"),
        (dict(fusion_method="gating", gate_bias="yes"), "gate_bias must be a bool; got 'yes'"),
        (dict(fusion_method="weighted", fixed_weights=(1.0, 1.0)), "learnable_weights=False"),
        (dict(fusion_method="weighted", learnable_weights=False, fixed_weights=(1.0,), adapter_names=("a", "b")),
         "2 adapters"),
        (dict(fusion_method="weighted", learnable_weights=False, fixed_weights=(-1.0, 2.0)), "non-negative"),
        (dict(fusion_method="gating", top_k=2), "top_k=2 does not apply: only fusion_method='sparse' reads it"),
        (dict(fusion_layers=(0, 0)), "distinct"),
        (dict(fusion_layers=(-1,)), "fusion_layers"),
        (dict(adapter_paths=("x", "y"), adapter_names=("a",)), "adapter_names"),
        (dict(name="a.b"), "name"),
    ],
)
def test_config_errors_name_field_and_value(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        FusionConfig(**overrides)


def test_build_errors(make_model, randomise) -> None:
    model = fused_model(make_model, randomise, adapter_configs(2, "pfeiffer"))
    manager = model.adapters
    with pytest.raises(ValueError, match="at least one adapter"):
        build_fusion(FusionConfig(), manager)
    with pytest.raises(KeyError, match=r"'nope'.*available: \['a0', 'a1'\]"):
        build_fusion(FusionConfig(adapter_names=("a0", "nope")), manager)
    with pytest.raises(ValueError, match=r"fusion_layers holds \[2\]; the model has layers 0..1"):
        build_fusion(fusion_config("attention", 2, fusion_layers=(0, 2)), manager)
    with pytest.raises(ValueError, match="num_attention_heads=3 must divide the hidden size 32"):
        build_fusion(fusion_config("attention", 2, num_attention_heads=3), manager)
    model.add_adapter("plain", AdapterConfig(residual=False), activate=False)
    with pytest.raises(ValueError, match="residual"):
        build_fusion(FusionConfig(adapter_names=("a0", "plain")), manager)
    model.add_adapter("no_ln", AdapterConfig(original_ln_before=False), activate=False)
    with pytest.raises(ValueError, match="must agree on original_ln_before and residual_before_ln.*no_ln: False"):
        build_fusion(FusionConfig(adapter_names=("a0", "no_ln")), manager)
    model.add_adapter("top", AdapterConfig(layers=(1,)), activate=False)
    with pytest.raises(ValueError, match="fusion layer 0 holds none of the adapters"):
        build_fusion(FusionConfig(adapter_names=("top",), fusion_layers=(0, 1)), manager)
    fuse = add_fusion(model, fusion_config("weighted", 2))
    manager.remove_adapter("a1")
    with pytest.raises(KeyError, match="'a1'"):
        run(model, inputs())
    assert isinstance(fuse, Fuse)


@pytest.mark.parametrize("method", METHODS)
def test_layer_rejects_adapters_of_another_hidden_size_or_count(method: str) -> None:
    config = FusionConfig(fusion_method=method)
    layer = FUSION_METHODS.get(method).build(config, FusionPoint("0_ffn", HIDDEN, (0, 1), 2), {})
    hidden = torch.randn(1, 3, HIDDEN)
    with pytest.raises(ValueError, match="hidden size 32"):
        layer(hidden, [BottleneckAdapter(HIDDEN, 4), BottleneckAdapter(16, 4)])
    with pytest.raises(ValueError, match="fuses 2 adapters; got 1"):
        layer(hidden, [BottleneckAdapter(HIDDEN, 4)])
    with pytest.raises(ValueError, match="at least one adapter"):
        layer(hidden, [])
    with pytest.raises(ValueError, match="ffn_input"):
        layer(hidden, [BottleneckAdapter(HIDDEN, 4)] * 2, reads_ffn_input=[True, False])


# -------------------------------------------------------------------------------------------------- config io
def test_config_json_round_trip(tmp_path) -> None:
    config = FusionConfig(
        adapter_names=("sst2", "mnli"),
        fusion_method="weighted",
        fusion_layers=(0, 3),
        learnable_weights=False,
        fixed_weights=(0.25, 0.75),
        temperature=5.0,
        temperature_decay=0.1,
    )
    assert FusionConfig.from_dict(config.to_dict()) == config
    config.save(tmp_path / "fusion.json")
    assert FusionConfig.load(tmp_path / "fusion.json") == config
    with pytest.warns(UserWarning, match="unknown keys"):
        assert FusionConfig.from_dict({**config.to_dict(), "from_the_future": 1}) == config
    assert FusionConfig(adapter_names=["a", "b"], fusion_layers=[1]).adapter_names == ("a", "b")  # type: ignore[arg-type]


def test_every_config_field_has_a_docstring() -> None:
    import ast
    import inspect

    from adapter_fusion.fusion import config as module

    tree = ast.parse(inspect.getsource(module))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "FusionConfig")
    documented = set()
    for previous, node in zip(cls.body, cls.body[1:]):
        if isinstance(previous, ast.AnnAssign) and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            documented.add(previous.target.id)  # type: ignore[union-attr]
    import dataclasses

    assert {f.name for f in dataclasses.fields(FusionConfig)} == documented
