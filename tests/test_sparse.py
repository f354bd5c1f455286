"""Sparse top-k fusion: only the chosen adapters run, k = N equals dense gating, both execution paths agree,
the load-balancing loss, save/reload, and bad settings (k = 0, k > N, unknown routing).

The shared invariants (fast path == dense reference with gradients, one adapter == that adapter, weights that
sum to 1, no state in forward, save/reload) run for this method in test_fusion.py / test_fusion_training.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.nn import functional as F

from adapter_fusion.adapters import AdapterConfig, BottleneckAdapter, LoraAdapter
from adapter_fusion.fusion import FUSION_METHODS, FusionConfig, FusionPoint, GatingFusion, SparseFusion, add_fusion
from adapter_fusion.models.fusion_model import FusionModel
from conftest import build_tiny_model, make_batch, randomise_
from test_fusion import (
    adapter_configs,
    fused_model,
    fusion_config,
    inputs,
    one_thread,  # noqa: F401  (autouse: one intra-op thread)
    run,
)

HIDDEN = 32


def adapters(n: int, seed: int = 0, **kwargs: Any) -> list[BottleneckAdapter]:
    torch.manual_seed(seed)
    return [BottleneckAdapter(HIDDEN, 8, initialization="bert", **kwargs).double() for _ in range(n)]


def layer(n: int, **kwargs: Any) -> SparseFusion:
    torch.manual_seed(1)
    fusion = SparseFusion(HIDDEN, n, **kwargs).double()
    with torch.no_grad():
        fusion.gate.weight.normal_(0.0, 0.5)
        fusion.gate.bias.normal_(0.0, 0.5)
    return fusion


def hidden(seed: int = 2, batch: int = 4, seq: int = 6) -> torch.Tensor:
    return torch.randn(batch, seq, HIDDEN, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ------------------------------------------------------------------------------------------------ k = N: dense
def test_k_equal_n_per_token_equals_dense_softmax_gating() -> None:
    sparse = layer(5, top_k=5)
    dense = GatingFusion(HIDDEN, 5, activation="softmax").double()
    dense.load_state_dict(sparse.state_dict())
    h, group = hidden(), adapters(5)
    fast = sparse(h, group, return_weights=True)
    expected = dense(h, group, return_weights=True)
    torch.testing.assert_close(fast.hidden, expected.hidden)
    torch.testing.assert_close(fast.weights, expected.weights)


@pytest.mark.parametrize("routing", ["token", "example"])
def test_k_equal_n_equals_the_dense_computation_with_gradients(routing: str) -> None:
    results = []
    for path in ("sparse", "dense"):
        fusion, group, h = layer(4, top_k=4, routing=routing), adapters(4), hidden().requires_grad_(True)
        if path == "sparse":
            out = fusion(h, group).hidden
        else:  # every adapter run on every token, then softmax over all N logits
            source = h[:, :1] if routing == "example" else h
            probs = torch.softmax(fusion.gate(source), dim=-1)
            out = h + (probs.unsqueeze(-1) * torch.stack([a(h) for a in group], dim=-2)).sum(-2)
        out.pow(2).sum().backward()
        grads = [h.grad, fusion.gate.weight.grad] + [p.grad for a in group for p in a.parameters()]
        results.append((out.detach(), grads))
    (fast, fast_grads), (ref, ref_grads) = results
    torch.testing.assert_close(fast, ref)
    for got, want in zip(fast_grads, ref_grads):
        torch.testing.assert_close(got, want)


def test_defaults_and_gate_initialisation() -> None:
    torch.manual_seed(0)
    fusion = SparseFusion(512, 32)
    assert (fusion.top_k, fusion.routing, fusion.load_balancing) == (2, "token", 0.01)
    assert fusion.extra_repr() == "top_k=2, routing='token', load_balancing=0.01"
    assert 0.019 < fusion.gate.weight.std().item() < 0.021 and not fusion.gate.bias.any()  # N(0, 0.02), zero
    assert torch.equal(fusion.regularization_loss(), torch.zeros(()))  # before any forward
    assert SparseFusion(HIDDEN, 3, load_balancing=0).load_balancing == 0.0  # 0 disables, it is allowed
    assert layer(3)(hidden(), adapters(3)).weights is None  # weights only when asked for


@pytest.mark.parametrize("routing", ["token", "example"])
def test_route_divides_logits_by_temperature_and_softmaxes_the_top_k(routing: str) -> None:
    fusion, h = layer(5, top_k=2, routing=routing, temperature=2.0), hidden()
    logits, chosen, weights = fusion.route(h)
    source = h[:, 0] if routing == "example" else h.reshape(-1, HIDDEN)
    expected = (source @ fusion.gate.weight.T + fusion.gate.bias) / 2.0
    torch.testing.assert_close(logits, expected)
    top = expected.sort(dim=-1, descending=True)
    assert torch.equal(chosen, top.indices[:, :2])
    torch.testing.assert_close(weights, torch.softmax(top.values[:, :2], dim=-1))


# --------------------------------------------------------------------------------------- only k adapters run
def test_per_token_routing_runs_each_adapter_only_on_the_tokens_that_chose_it() -> None:
    fusion, group, h = layer(8, top_k=2), adapters(8), hidden()
    seen: dict[int, int] = {}
    for index, adapter in enumerate(group):
        adapter.register_forward_hook(lambda m, a, o, i=index: seen.__setitem__(i, seen.get(i, 0) + a[0].shape[0]))
    with torch.no_grad():
        out = fusion(h, group, return_weights=True)
    tokens = h.shape[0] * h.shape[1]
    assert sum(seen.values()) == 2 * tokens  # k rows per token, not N
    chosen = (out.weights > 0).reshape(tokens, 8).sum(0)
    assert {i: int(c) for i, c in enumerate(chosen) if c} == seen
    assert ((out.weights > 0).sum(-1) == 2).all()
    torch.testing.assert_close(out.weights.sum(-1), torch.ones(h.shape[:2], dtype=torch.float64))


def test_unchosen_adapters_get_no_gradient() -> None:
    fusion, group = layer(16, top_k=1), adapters(16)
    h = hidden(batch=1, seq=2)
    fusion(h, group).hidden.sum().backward()
    touched = [i for i, a in enumerate(group) if a.down.weight.grad is not None]
    assert 1 <= len(touched) <= 2


@pytest.mark.parametrize("k", [1, 2, 3])
def test_example_routing_gather_path_equals_dispatch_path_and_reference(k: int) -> None:
    fusion, group, h = layer(6, top_k=k, routing="example"), adapters(6), hidden()
    logits, chosen, weights = fusion.route(h)
    from adapter_fusion.fusion.packing import AdapterPack

    pack = AdapterPack(group, None, HIDDEN)
    gathered = fusion._gathered(h, None, pack, chosen, weights)
    dispatched = fusion._dispatched((h, None, None), pack, chosen, weights)
    torch.testing.assert_close(gathered, dispatched)
    reference = FUSION_METHODS.get("sparse").reference(fusion, h, group)
    torch.testing.assert_close(h + gathered, reference.hidden)
    out = fusion(h, group, return_weights=True)
    torch.testing.assert_close(out.hidden, reference.hidden)
    assert ((out.weights > 0).sum(-1) == k).all()
    assert torch.equal(out.weights[:, 0], out.weights[:, -1])  # one choice per example


def test_example_routing_of_an_example_does_not_depend_on_its_batch_or_padding() -> None:
    fusion, group, h = layer(6, top_k=2, routing="example"), adapters(6), hidden()
    with torch.no_grad():
        whole = fusion(h, group).hidden
        alone = fusion(h[1:2], group).hidden
        longer = fusion(torch.cat([h[1:2], hidden(seed=9, batch=1, seq=3)], dim=1), group).hidden
    torch.testing.assert_close(alone, whole[1:2])
    torch.testing.assert_close(longer[:, : h.shape[1]], whole[1:2])


def test_example_routing_of_same_shaped_adapters_gathers_their_weights_instead_of_calling_them() -> None:
    fusion, group, h = layer(4, top_k=2, routing="example"), adapters(4), hidden()
    calls: list[int] = []
    for adapter in group:
        adapter.register_forward_hook(lambda *_: calls.append(1))
    fusion(h, group)
    assert not calls  # the gather path: two batched matmuls over the packed weights
    fusion.routing = "token"
    fusion(h, group)
    assert calls  # per-token routing dispatches to each chosen adapter


def relu_and_tanh(n: int) -> list[BottleneckAdapter]:
    torch.manual_seed(0)
    return [BottleneckAdapter(HIDDEN, 8, activation=("relu", "tanh")[i % 2], initialization="bert") for i in range(n)]


# Adapter groups example routing must fuse exactly, whether or not their weights can be gathered: (adapters, reads)
EXAMPLE_GROUPS: dict[str, Callable[[], tuple[list[Any], list[bool] | None]]] = {
    "one adapter": lambda: (adapters(1), None),
    "parallel adapters": lambda: (adapters(3), [True] * 3),
    "ffn_input given, read by none": lambda: (adapters(3), [False] * 3),
    "some parallel": lambda: (adapters(4), [True, False] * 2),
    "two activations": lambda: (relu_and_tanh(4), None),
    "two bottleneck sizes": lambda: ([*adapters(2), BottleneckAdapter(HIDDEN, 4, initialization="bert")], None),
    "dropout, eval mode": lambda: (adapters(3, dropout=0.5), None),
    "lora": lambda: ([randomise_(LoraAdapter(16, HIDDEN, 4), seed=i, std=0.3) for i in range(3)], None),
}


@pytest.mark.parametrize("group_name", list(EXAMPLE_GROUPS))
def test_example_routing_equals_the_reference_for_every_kind_of_adapter_group(group_name: str) -> None:
    group, reads = EXAMPLE_GROUPS[group_name]()
    group = [adapter.double().eval() for adapter in group]
    fusion, h = layer(len(group), top_k=min(2, len(group)), routing="example"), hidden()
    lora_input = torch.randn(4, 6, 16, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    streams = {"ffn_input": hidden(seed=3), "module_input": lora_input}
    with torch.no_grad():
        out = fusion(h, group, reads_ffn_input=reads, return_weights=True, **streams)
        expected = FUSION_METHODS.get("sparse").reference(fusion, h, group, reads_ffn_input=reads, **streams)
    torch.testing.assert_close(out.hidden, expected.hidden)
    torch.testing.assert_close(out.weights, expected.weights)
    if len(group) == 1:
        torch.testing.assert_close(out.hidden, h + group[0](h))


def test_example_routing_applies_the_adapters_dropout_while_training() -> None:
    """The gather path draws one mask over the chosen adapters' bottleneck units ``[batch, seq, k * r]``, at the
    adapters' rate ``p``, scaled by ``1 / (1 - p)``: written out here with the same seed."""
    p, k, r = 0.3, 2, 8
    fusion, group, h = layer(3, top_k=k, routing="example"), adapters(3, dropout=p), hidden(batch=2, seq=3)
    fusion.train()
    torch.manual_seed(5)
    out = fusion(h, group).hidden
    _, chosen, weights = fusion.route(h)
    torch.manual_seed(5)
    keep = F.dropout(torch.ones(2, 3, k * r, dtype=torch.float64), p, training=True)
    assert 0 < (keep == 0).sum() < keep.numel()
    expected = h.clone()
    for b in range(2):
        for j in range(k):
            adapter = group[int(chosen[b, j])]
            bottleneck = torch.relu(h[b] @ adapter.down.weight.T + adapter.down.bias) * keep[b, :, j * r : (j + 1) * r]
            expected[b] += weights[b, j] * (bottleneck @ adapter.up.weight.T + adapter.up.bias)
    torch.testing.assert_close(out, expected)


# -------------------------------------------------------------------------------------------- load balancing
def test_load_balancing_loss_is_lambda_for_uniform_routing_and_trains_the_gate() -> None:
    fusion, group, h = layer(4, top_k=2, load_balancing=0.5), adapters(4), hidden()
    with torch.no_grad():
        fusion.gate.weight.zero_()
        fusion.gate.bias.zero_()
    fusion.train()
    fusion(h, group)
    # P_i = 1/N for every adapter and the shares sum to 1: N * sum_i f_i / N = 1
    torch.testing.assert_close(fusion.regularization_loss(), torch.tensor(0.5, dtype=torch.float64))
    skewed = layer(4, top_k=2, load_balancing=0.5).train()
    with torch.no_grad():
        skewed.gate.bias.copy_(torch.tensor([4.0, 3.0, 0.0, 0.0]))
        skewed.gate.weight.zero_()
    skewed(h, group)
    penalty = skewed.regularization_loss()
    assert penalty.item() > 0.5
    penalty.backward()
    assert skewed.gate.bias.grad is not None and skewed.gate.bias.grad[0] > 0  # pushes the favourite down
    skewed.eval()
    skewed(h, group)
    assert skewed.regularization_loss().item() == 0.0


def test_balance_loss_by_hand_on_the_device_of_its_inputs() -> None:
    fusion = SparseFusion(HIDDEN, 3, top_k=1, load_balancing=0.5)
    log2 = torch.tensor(2.0).log().item()
    logits = torch.tensor([[log2, 0.0, 0.0], [0.0, 0.0, log2]])  # softmax rows (.5, .25, .25), (.25, .25, .5)
    chosen = torch.tensor([[0], [2]])  # shares (.5, 0, .5); mean probabilities (.375, .25, .375)
    torch.testing.assert_close(fusion.balance_loss(logits, chosen), torch.tensor(0.5 * 3 * 0.375))
    meta = fusion.balance_loss(logits.to("meta"), chosen.to("meta"))  # e.g. cuda: no tensor made on the cpu
    assert meta.device.type == "meta" and meta.shape == ()


def test_load_balancing_zero_records_no_term() -> None:
    fusion, group, h = layer(4, top_k=2, load_balancing=0.0), adapters(4), hidden()
    fusion.train()
    fusion(h, group)
    loss = fusion.regularization_loss()
    assert loss.item() == 0.0 and loss.grad_fn is None  # nothing added to the graph when disabled


def test_fuse_regularization_loss_sums_the_balancing_terms(make_model, randomise) -> None:
    model = fused_model(make_model, randomise, adapter_configs(3, "houlsby"))
    fuse = add_fusion(model, fusion_config("sparse", 3, load_balancing=0.1))
    model.train()
    run(model, inputs())
    terms = [layer.regularization_loss() for layer in fuse.layers.values()]
    assert len(terms) == 4 and all(t.item() > 0 and t.requires_grad for t in terms)
    torch.testing.assert_close(fuse.regularization_loss(), torch.stack(terms).sum())


# ------------------------------------------------------------------------------------------------- model level
def test_builder_passes_every_setting() -> None:
    config = FusionConfig(fusion_method="sparse", top_k=3, routing="example", load_balancing=0.5, temperature=2.0)
    built = FUSION_METHODS.get("sparse").build(config, FusionPoint("0_ffn", HIDDEN, (0, 1, 2, 3), 4), {})
    assert (built.top_k, built.routing, built.load_balancing, built.temperature) == (3, "example", 0.5, 2.0)


def test_points_holding_fewer_adapters_than_k_use_them_all(make_model, randomise) -> None:
    model = fused_model(make_model, randomise, [AdapterConfig(bottleneck_size=4), AdapterConfig(layers=(1,))])
    fuse = add_fusion(model, fusion_config("sparse", 2, top_k=2))
    assert fuse.layers["0_ffn"].top_k == 1 and fuse.layers["1_ffn"].top_k == 2


def test_example_routing_fusion_saves_and_reloads_exactly(tmp_path: Path) -> None:
    base_dir = tmp_path / "base"
    build_tiny_model("bert").save_pretrained(base_dir)
    model = FusionModel.from_pretrained(str(base_dir)).eval()
    for index in range(4):
        model.add_adapter(f"a{index}", AdapterConfig(bottleneck_size=4, placement="houlsby"), activate=False)
        randomise_(model.adapters.adapters[f"a{index}"], seed=index + 1, std=0.3)
    config = FusionConfig(adapter_names=("a0", "a1", "a2", "a3"), fusion_method="sparse", top_k=2, routing="example")
    model.add_fusion(config)
    model.add_classification_head("target", num_labels=3, dropout=0.0)
    randomise_(model.fusion, seed=7, std=0.3)
    batch = make_batch(batch=3, length=7)
    with torch.no_grad():
        expected = model(**batch, return_fusion_weights=True)
    model.save_fusion(tmp_path / "fusion")
    torch.manual_seed(99)
    reloaded = FusionModel.load_fusion(tmp_path / "fusion")
    assert reloaded.fusion.config.routing == "example" and reloaded.fusion.config.top_k == 2
    with torch.no_grad():
        got = reloaded(**batch, return_fusion_weights=True)
    assert torch.equal(got.logits, expected.logits)
    for key, weights in expected.fusion_weights.items():
        assert torch.equal(got.fusion_weights[key], weights)


# ------------------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        (dict(top_k=0), ValueError, "top_k must be > 0; got 0"),
        (dict(top_k=2.0), TypeError, "top_k must be an integer"),
        (dict(top_k=3, adapter_names=("a", "b")), ValueError, "top_k=3 exceeds the 2 fused adapters"),
        (dict(routing="sequence"), ValueError, "routing must be one of 'token', 'example'; got 'sequence'"),
        (dict(load_balancing=-1.0), ValueError, "load_balancing must be >= 0; got -1.0"),
    ],
)
def test_config_errors(overrides: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        FusionConfig(fusion_method="sparse", **overrides)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(top_k=2.0), r"top_k must be an integer in \[1, 3\] \(the fused adapters\); got 2.0"),
        (dict(top_k=True), r"top_k must be an integer in \[1, 3\].*got True"),
        (dict(routing="sequence"), r"routing must be one of \('token', 'example'\); got 'sequence'"),
        (dict(load_balancing=-0.5), "load_balancing must be a number >= 0; got -0.5"),
        (dict(load_balancing=True), "load_balancing must be a number >= 0; got True"),
        (dict(load_balancing="0.1"), "load_balancing must be a number >= 0; got '0.1'"),
    ],
)
def test_layer_refuses_bad_settings(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SparseFusion(HIDDEN, 3, **kwargs)


def test_layer_and_builder_errors(make_model, randomise) -> None:
    with pytest.raises(ValueError, match=r"top_k must be an integer in \[1, 3\].*got 4"):
        SparseFusion(HIDDEN, 3, top_k=4)
    with pytest.raises(ValueError, match=r"top_k must be an integer in \[1, 3\].*got 0"):
        SparseFusion(HIDDEN, 3, top_k=0)
    with pytest.raises(ValueError, match="top_k=3 exceeds the 2 fused adapters"):
        config = FusionConfig(fusion_method="sparse", top_k=3)
        FUSION_METHODS.get("sparse").build(config, FusionPoint("0_ffn", HIDDEN, (0, 1), 2), {})
    model = fused_model(make_model, randomise, adapter_configs(2, "pfeiffer"))
    with pytest.raises(ValueError, match="top_k=3 exceeds the 2 fused adapters"):
        add_fusion(model, FusionConfig(fusion_method="sparse", top_k=3).replace(adapter_names=("a0", "a1")))
    with pytest.raises(ValueError, match=r"hidden must be \[batch, seq, 32\]; got shape \(5, 32\)"):
        SparseFusion(HIDDEN, 2, routing="example")(torch.randn(5, HIDDEN), [BottleneckAdapter(HIDDEN, 4)] * 2)
