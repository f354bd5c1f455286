"""Bottleneck adapters attached by hooks: identity at start, exact disable/detach, stacking, reference maths.

Parametrised over every model family (``family`` fixture) and every placement (``placement`` fixture).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from adapter_fusion.adapters import AdapterConfig, BottleneckAdapter
from adapter_fusion.models import ARCHITECTURES, AdapterManager, spec_for
from adapter_fusion.models.specs import layer_modules

BOTTLENECK = 8


def last_hidden(model: nn.Module, batch: dict[str, torch.Tensor], **kwargs: Any) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch, **kwargs).last_hidden_state


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_state(before: dict[str, torch.Tensor], model: nn.Module) -> None:
    after = model.state_dict()
    assert list(after) == list(before)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert not changed, f"base tensors changed: {changed}"


def test_every_registered_family_has_a_tiny_config(tiny_configs: dict[str, Any]) -> None:
    assert set(ARCHITECTURES.names()) == set(tiny_configs)


def test_spec_matches_model(tiny_model: nn.Module, family: str) -> None:
    spec = spec_for(tiny_model)
    assert spec.family == family
    layers = layer_modules(tiny_model, spec)
    assert len(layers) == 2
    for layer in layers:
        for path in (spec.attention_output, spec.ffn_input, spec.ffn_output):
            layer.get_submodule(path)  # raises AttributeError if the spec path is wrong


# ---------------------------------------------------------------------------------------------- identity / disable
def test_zero_initialised_adapter_is_exact_identity(tiny_model: nn.Module, batch: dict, placement: str) -> None:
    base = last_hidden(tiny_model, batch)
    manager = AdapterManager(tiny_model)
    manager.add_adapter("a", AdapterConfig(placement=placement, bottleneck_size=BOTTLENECK))
    for adapter in manager.adapters["a"].values():
        assert torch.count_nonzero(adapter.up.weight) == 0  # near_identity: zero up-projection
        assert torch.count_nonzero(adapter.down.weight) > 0
    assert manager.active == ("a",)
    assert torch.equal(last_hidden(tiny_model, batch), base)


def test_disable_and_detach_give_back_the_base_model(
    tiny_model: nn.Module, batch: dict, placement: str, randomise: Any
) -> None:
    before = snapshot(tiny_model)
    base = last_hidden(tiny_model, batch)
    manager = AdapterManager(tiny_model)
    manager.add_adapter("a", AdapterConfig(placement=placement, bottleneck_size=BOTTLENECK))
    randomise(manager.adapters["a"])
    assert_same_state(before, tiny_model)  # no adapter key leaks into the base state dict

    adapted = last_hidden(tiny_model, batch)
    assert torch.isfinite(adapted).all()
    assert not torch.allclose(adapted, base, atol=1e-4)

    with manager.disable():
        assert torch.equal(last_hidden(tiny_model, batch), base)
    assert torch.equal(last_hidden(tiny_model, batch), adapted)  # re-enabled on exit
    with manager.using([]):
        assert torch.equal(last_hidden(tiny_model, batch), base)
    assert manager.active == ("a",)

    manager.detach()
    assert not manager.attached
    assert torch.equal(last_hidden(tiny_model, batch), base)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in tiny_model.modules())
    manager.attach()
    assert torch.equal(last_hidden(tiny_model, batch), adapted)
    manager.detach()
    assert_same_state(before, tiny_model)


def test_adapter_only_in_chosen_layers(tiny_model: nn.Module, batch: dict, placement: str, randomise: Any) -> None:
    with torch.no_grad():
        base = tiny_model(**batch, output_hidden_states=True).hidden_states
    manager = AdapterManager(tiny_model)
    manager.add_adapter("late", AdapterConfig(placement=placement, bottleneck_size=BOTTLENECK, layers=(1,)))
    assert all(key.startswith("1_") for key in manager.adapters["late"])
    randomise(manager.adapters["late"])
    with torch.no_grad():
        adapted = tiny_model(**batch, output_hidden_states=True).hidden_states
    assert torch.equal(adapted[0], base[0]) and torch.equal(adapted[1], base[1])  # embeddings, layer 0
    assert not torch.allclose(adapted[2], base[2], atol=1e-4)  # layer 1


def test_attention_location_only_for_houlsby(tiny_model: nn.Module, placement: str) -> None:
    manager = AdapterManager(tiny_model)
    manager.add_adapter("a", AdapterConfig(placement=placement, bottleneck_size=BOTTLENECK))
    locations = ("attention", "ffn") if placement == "houlsby" else ("ffn",)
    assert set(manager.adapters["a"]) == {f"{layer}_{loc}" for layer in range(2) for loc in locations}


# ---------------------------------------------------------------------------------------------- stacking
def hand_stack_hooks(model: nn.Module, manager: AdapterManager, names: Sequence[str]) -> list[Any]:
    """Hooks that apply ``names`` in order at every adapter point, written out without the manager's logic."""
    spec = manager.spec
    handles = []
    ffn_inputs: dict[int, torch.Tensor] = {}
    for index, layer in enumerate(layer_modules(model, spec)):

        def capture(module: nn.Module, args: tuple, index: int = index) -> None:
            ffn_inputs[index] = args[0]

        handles.append(layer.get_submodule(spec.ffn_input).register_forward_pre_hook(capture))
        for location, path in (("attention", spec.attention_output), ("ffn", spec.ffn_output)):

            def apply(module: nn.Module, args: tuple, output: torch.Tensor, index=index, location=location):
                hidden = output
                for name in names:
                    key = f"{index}_{location}"
                    if key not in manager.adapters[name]:
                        continue
                    adapter = manager.adapters[name][key]
                    source = ffn_inputs[index] if manager.configs[name].placement == "parallel" else hidden
                    hidden = hidden + reference_delta(adapter, source, scaling=1.0)
                return hidden

            handles.append(layer.get_submodule(path).register_forward_hook(apply))
    return handles


def test_stack_equals_manual_composition(tiny_model: nn.Module, batch: dict, placement: str, randomise: Any) -> None:
    manager = AdapterManager(tiny_model)
    for seed, name in enumerate(("a", "b"), start=1):
        # the hand-made hooks read the sub-layer output; the LayerNorm-before variant: test_bert_layer_matches_...
        config = AdapterConfig(placement=placement, bottleneck_size=BOTTLENECK, original_ln_before=False)
        manager.add_adapter(name, config, activate=False)
        randomise(manager.adapters[name], seed=seed)
    with manager.using(["a", "b"]):
        assert manager.active == ("a", "b")
        stacked = last_hidden(tiny_model, batch)
    with manager.using("a"):
        only_a = last_hidden(tiny_model, batch)
    assert manager.active == ()

    handles = hand_stack_hooks(tiny_model, manager, ["a", "b"])
    try:
        with manager.disable():
            reference = last_hidden(tiny_model, batch)
    finally:
        for handle in handles:
            handle.remove()
    torch.testing.assert_close(stacked, reference)
    assert not torch.allclose(stacked, only_a, atol=1e-4)

    manager.set_active("b", "a")
    reversed_order = last_hidden(tiny_model, batch)
    if placement == "parallel":  # parallel adapters read the same input: the order only changes rounding
        torch.testing.assert_close(reversed_order, stacked)
    else:
        assert not torch.allclose(reversed_order, stacked, atol=1e-5)


# ---------------------------------------------------------------------------------------------- reference maths
def reference_delta(adapter: BottleneckAdapter, x: torch.Tensor, scaling: float) -> torch.Tensor:
    """``scaling * up(relu(down(x)))`` from the raw weights."""
    bottleneck = torch.relu(x @ adapter.down.weight.T + adapter.down.bias)
    return scaling * (bottleneck @ adapter.up.weight.T + adapter.up.bias)


@pytest.mark.parametrize(
    ("placement", "residual", "scaling", "ln_before", "residual_before_ln"),
    [("pfeiffer", True, 1.0, False, True), ("pfeiffer", False, 1.0, False, True), ("pfeiffer", True, 2.5, False, True),
     ("houlsby", True, 1.0, None, True), ("parallel", True, 4.0, None, True),
     ("pfeiffer", True, 1.0, None, True), ("pfeiffer", True, 2.5, True, "post_add"),
     ("pfeiffer", True, 1.0, True, False), ("pfeiffer", False, 1.0, True, True), ("houlsby", True, 1.0, True, True)],
)
def test_bert_layer_matches_hand_computed_adapter_maths(
    make_model: Any, inputs_for: Any, randomise: Any, placement: str, residual: bool, scaling: float,
    ln_before: bool | None, residual_before_ln: bool | str,
) -> None:
    """Recompute BertSelfOutput / BertOutput (dense -> adapter -> + residual -> LayerNorm) by hand. With
    original_ln_before (AdapterHub's SeqBnConfig, our 'pfeiffer' default) the adapter reads LayerNorm(dense + x)
    and its output joins the residual chosen by residual_before_ln before the sub-layer's residual add and norm."""
    model = make_model("bert")
    batch = inputs_for(model)
    manager = AdapterManager(model)
    config = AdapterConfig(
        placement=placement, bottleneck_size=BOTTLENECK, residual=residual, scaling=scaling,
        original_ln_before=ln_before, residual_before_ln=residual_before_ln,
    )  # fmt: skip
    assert config.original_ln_before is (placement == "pfeiffer" if ln_before is None else ln_before)
    manager.add_adapter("a", config)
    randomise(manager.adapters["a"])

    seen: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    handles = []
    for index, layer in enumerate(model.encoder.layer):
        for location, module in (("attention", layer.attention.output), ("ffn", layer.output)):

            def pre(module: nn.Module, args: tuple, key=(index, location)) -> None:
                seen[key] = {"hidden": args[0], "residual": args[1]}

            def post(module: nn.Module, args: tuple, output: torch.Tensor, key=(index, location)) -> None:
                seen[key]["output"] = output

            handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    try:
        last_hidden(model, batch)
    finally:
        for handle in handles:
            handle.remove()

    with torch.no_grad():
        for (index, location), values in seen.items():
            layer = model.encoder.layer[index]
            sub = layer.attention.output if location == "attention" else layer.output
            dense = values["hidden"] @ sub.dense.weight.T + sub.dense.bias
            key = f"{index}_{location}"
            norm = functools.partial(
                F.layer_norm, normalized_shape=(dense.shape[-1],), weight=sub.LayerNorm.weight,
                bias=sub.LayerNorm.bias, eps=sub.LayerNorm.eps,
            )  # fmt: skip
            if key not in manager.adapters["a"]:
                adapted = dense
            elif config.original_ln_before:
                summed = dense + values["residual"]
                source = norm(summed)
                chosen = {True: dense, "post_add": summed, False: source}[residual_before_ln]
                delta = reference_delta(manager.adapters["a"][key], source, scaling)
                adapted = chosen + delta if residual else delta
            elif placement == "parallel":  # reads the feed-forward input, which is BertOutput's residual input
                adapted = dense + reference_delta(manager.adapters["a"][key], values["residual"], scaling)
            elif residual:
                adapted = dense + reference_delta(manager.adapters["a"][key], dense, scaling)
            else:
                adapted = reference_delta(manager.adapters["a"][key], dense, scaling)
            torch.testing.assert_close(values["output"], norm(adapted + values["residual"]))
    assert len(seen) == 4


@pytest.mark.parametrize("placement", ["pfeiffer", "parallel"])
def test_residual_add_in_place_keeps_inputs_and_gradients(make_model: Any, randomise: Any, placement: str) -> None:
    """``apply_adapter`` adds the residual into the adapter's own output in place: the hidden states (and the
    feed-forward input) it was given stay untouched, and gradients equal those of ``hidden + delta``."""
    manager = AdapterManager(make_model("bert"))
    config = AdapterConfig(placement=placement, bottleneck_size=BOTTLENECK, scaling=2.0, original_ln_before=False)
    manager.add_adapter("a", config)
    randomise(manager.adapters["a"])
    adapter = manager.adapters["a"]["0_ffn"]
    hidden = torch.randn(2, 5, adapter.hidden_size, requires_grad=True)
    ffn_input = torch.randn(2, 5, adapter.hidden_size, requires_grad=True)
    kept = hidden.detach().clone(), ffn_input.detach().clone()
    out = manager.apply_adapter("a", 0, "ffn", hidden, ffn_input if placement == "parallel" else None)
    assert torch.equal(hidden.detach(), kept[0]) and torch.equal(ffn_input.detach(), kept[1])
    source = ffn_input if placement == "parallel" else hidden
    expected = hidden + 2.0 * adapter.up(adapter.activation(adapter.down(source)))
    assert torch.equal(out, expected)
    weights = torch.randn_like(out)
    got = torch.autograd.grad((out * weights).sum(), [hidden, ffn_input, adapter.down.weight], allow_unused=True)
    want = torch.autograd.grad((expected * weights).sum(), [hidden, ffn_input, adapter.down.weight], allow_unused=True)
    for a, b in zip(got, want, strict=True):
        assert (a is None and b is None) or torch.equal(a, b)


def test_adapter_follows_model_dtype(make_model: Any, inputs_for: Any) -> None:
    model = make_model("bert").to(torch.float64)
    manager = AdapterManager(model)
    manager.add_adapter("a", AdapterConfig(bottleneck_size=BOTTLENECK, initialization="bert"))
    assert all(p.dtype == torch.float64 for p in manager.parameters())
    assert last_hidden(model, inputs_for(model)).dtype == torch.float64


# ---------------------------------------------------------------------------------------------- the module
def test_bottleneck_adapter_initialisations() -> None:
    torch.manual_seed(0)
    near = BottleneckAdapter(32, 4)
    assert torch.count_nonzero(near.up.weight) == 0 and torch.count_nonzero(near.up.bias) == 0
    assert torch.count_nonzero(near.down.bias) == 0
    assert 0 < near.down.weight.std() < 0.05
    x = torch.randn(2, 3, 32)
    assert torch.equal(near(x), torch.zeros_like(x))
    bert = BottleneckAdapter(32, 4, initialization="bert", scaling=2.0)
    assert torch.count_nonzero(bert.up.weight) > 0
    torch.testing.assert_close(bert(x), reference_delta(bert, x, 2.0))
    assert bert(x).shape == x.shape and bert.bottleneck(x).shape == (2, 3, 4)
    with pytest.raises(ValueError, match="'softmax'"):
        BottleneckAdapter(32, 4, activation="softmax")
    with pytest.raises(ValueError, match="'xavier'"):
        BottleneckAdapter(32, 4, initialization="xavier")


def test_bottleneck_forward_does_not_modify_its_input() -> None:
    adapter = BottleneckAdapter(32, 4, initialization="bert")
    x = torch.randn(2, 3, 32)
    before = x.clone()
    adapter(x)
    assert torch.equal(x, before)


# ---------------------------------------------------------------------------------------------- the manager API
def test_manager_add_remove_list_activate(make_model: Any, inputs_for: Any, randomise: Any) -> None:
    model = make_model("bert")
    batch = inputs_for(model)
    manager = AdapterManager(model)
    assert manager.list_adapters() == [] and manager.active == ()

    manager.add_adapter("a", AdapterConfig(bottleneck_size=BOTTLENECK))
    manager.add_adapter("b", AdapterConfig(bottleneck_size=BOTTLENECK, placement="houlsby"), activate=False)
    manager.add_adapter("c")  # default config: bottleneck = hidden // 16 = 2
    assert manager.list_adapters() == ["a", "b", "c"]
    assert "a" in manager and "zzz" not in manager
    assert manager.active == ("c",)  # activating replaces the active set

    per_point = (32 * 8 + 8) + (8 * 32 + 32)
    assert manager.num_parameters("a") == 2 * per_point
    assert manager.num_parameters("b") == 4 * per_point
    assert manager.num_parameters("c") == 2 * ((32 * 2 + 2) + (2 * 32 + 32))
    assert manager.parameter_counts() == {"a": 2 * per_point, "b": 4 * per_point, "c": manager.num_parameters("c")}

    manager.set_active("a", "b")
    assert manager.active == ("a", "b")
    manager.set_active(["b", "a"])
    assert manager.active == ("b", "a")
    manager.set_active()
    assert manager.active == ()
    with manager.using("b"):
        assert manager.active == ("b",)
    assert manager.active == ()
    with pytest.raises(RuntimeError, match="boom"), manager.using(["a", "c"]):
        raise RuntimeError("boom")
    assert manager.active == ()

    manager.freeze("a")
    assert not any(p.requires_grad for p in manager.adapters["a"].parameters())
    assert all(p.requires_grad for p in manager.adapters["b"].parameters())
    manager.unfreeze("a")
    assert all(p.requires_grad for p in manager.adapters["a"].parameters())

    randomise(manager.adapters["a"])
    manager.set_active("a", "c")
    manager.remove_adapter("a")
    assert manager.list_adapters() == ["b", "c"] and manager.active == ("c",)
    assert "a" not in manager.adapters and "a" not in manager.configs
    base = last_hidden(model, batch)
    with manager.disable():
        torch.testing.assert_close(last_hidden(model, batch), base, rtol=0, atol=0)


def test_manager_errors_name_the_offending_value(make_model: Any) -> None:
    manager = AdapterManager(make_model("bert"))
    manager.add_adapter("a", AdapterConfig(bottleneck_size=BOTTLENECK))
    with pytest.raises(ValueError, match="'a' already exists"):
        manager.add_adapter("a")
    for bad_name in ("", "x.y"):
        with pytest.raises(ValueError, match=f"got {bad_name!r}"):
            manager.add_adapter(bad_name)
    with pytest.raises(TypeError, match="dict"):
        manager.add_adapter("d", {"placement": "houlsby"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\[5\].*0\.\.1"):
        manager.add_adapter("d", AdapterConfig(layers=(0, 5)))
    with pytest.raises(ValueError, match=r"\[-1\]"):
        manager.add_adapter("d", AdapterConfig(layers=(-1,)))
    assert manager.list_adapters() == ["a"]  # failed adds leave nothing behind

    for call in (
        lambda: manager.set_active("a", "zzz"),
        lambda: manager.remove_adapter("zzz"),
        lambda: manager.freeze("zzz"),
        lambda: manager.unfreeze("zzz"),
        lambda: manager.num_parameters("zzz"),
        lambda: manager.adapter_state_dict("zzz"),
    ):
        with pytest.raises(KeyError, match="'zzz'.*available"):
            call()
    with pytest.raises(KeyError, match="'zzz'"), manager.using("zzz"):
        pass
    assert manager.active == ("a",)


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("placement", "middle", ValueError),
        ("activation", "softmax", ValueError),
        ("bottleneck_size", 0, ValueError),
        ("bottleneck_size", 2.5, TypeError),
        ("dropout", 1.5, ValueError),
        ("scaling", -1.0, ValueError),
        ("reduction_factor", 0, ValueError),
        ("initialization", "xavier", ValueError),
        ("residual", "yes", TypeError),
        ("layers", (), ValueError),
        ("layers", ("0",), ValueError),
    ],
)
def test_bad_adapter_config_values(field: str, value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match=f"{field}.*{re.escape(repr(value))}"):
        AdapterConfig(**{field: value})


def test_unsupported_model_type_is_named() -> None:
    class Fake(nn.Module):
        config = type("Config", (), {"model_type": "t5"})()

    with pytest.raises(ValueError, match="'t5'.*bert"):
        AdapterManager(Fake())
    with pytest.raises(TypeError, match="Linear"):
        AdapterManager(nn.Linear(2, 2))
