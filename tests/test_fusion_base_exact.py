"""Exact behaviour of what every fusion method shares: the ``FusionLayer`` base (stand-alone form on given adapter
outputs, its errors, the default regulariser, the eval memo of weight products under autocast, weight
replacement and pickling), ``FusionConfig`` (attribute access to the method's settings, the flat dict, reading
dicts, which fields another method owns, layer indices) and the ``Fuse`` composition (its repr, the regulariser
of a fusion with no layers, loading the adapters it fuses from disk).

Written against the surviving mutants of issue 14 (``tests/MUTATION.md``): each assertion pins a behaviour a
user relies on, with the values worked out here rather than through the library.
"""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from adapter_fusion.adapters import AdapterConfig, BottleneckAdapter
from adapter_fusion.fusion import (
    FUSION_METHODS,
    AttentionFusion,
    FusionConfig,
    FusionLayer,
    GatingFusion,
    WeightedFusion,
    add_fusion,
    build_fusion,
    remove_fusion,
)
from adapter_fusion.fusion.packing import AdapterPack
from adapter_fusion.models import AdapterModel, save_adapter
from test_fusion import HIDDEN, hand_softmax, one_thread, perturb_, temperature_setup  # noqa: F401
from test_fusion_methods_exact import LOGITS, exactly


def weighted(num_adapters: int = 3, temperature: float = 0.5) -> WeightedFusion:
    """A stand-alone weighted fusion (no hidden size: it fuses given outputs) with the logits ``LOGITS``."""
    layer = WeightedFusion(num_adapters, temperature=temperature).double()
    with torch.no_grad():
        layer.logits.copy_(torch.tensor(LOGITS[:num_adapters]))
    return layer


# ------------------------------------------------------------------------------------- the stand-alone form
@pytest.mark.parametrize("stacked", [False, True], ids=["list", "stacked"])
@pytest.mark.parametrize("residual", [True, False])
def test_stand_alone_form_mixes_given_contributions(stacked: bool, residual: bool) -> None:
    hidden = torch.randn(7, 6, dtype=torch.float64)
    contributions = [torch.full((7, 6), c, dtype=torch.float64) for c in (1.0, -2.0, 4.0)]
    outputs: Any = [hidden + c for c in contributions]  # adapter outputs include the residual
    if stacked:
        outputs = torch.stack(outputs, dim=-2)  # [7, 3, 6]
    w = hand_softmax(torch.tensor(LOGITS, dtype=torch.float64) / 0.5)
    mixed = w[0] * 1.0 - w[1] * 2.0 + w[2] * 4.0
    expected = hidden + mixed if residual else torch.full((7, 6), mixed.item(), dtype=torch.float64)

    layer = weighted()
    torch.testing.assert_close(layer(hidden, outputs, residual=residual), expected)
    result = layer(hidden, outputs, residual=residual, return_weights=True)
    torch.testing.assert_close(result.hidden, expected)
    torch.testing.assert_close(result.weights, w.expand(7, 3))


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ([torch.zeros(7, 6), torch.zeros(7, 5), torch.zeros(7, 6)],
         "adapter outputs must each be shaped like hidden_states (7, 6); got [(7, 6), (7, 5), (7, 6)]"),
        (torch.zeros(7, 3, 5),
         "stacked adapter outputs must be [..., N, hidden] around hidden_states (7, 6); got (7, 3, 5)"),
        (torch.zeros(8, 3, 6),
         "stacked adapter outputs must be [..., N, hidden] around hidden_states (7, 6); got (8, 3, 6)"),
        (torch.zeros(7, 2, 6), "this fusion layer fuses 3 adapters; got 2 outputs"),
        ([torch.zeros(7, 6)] * 4, "this fusion layer fuses 3 adapters; got 4 outputs"),
    ],
)  # fmt: skip
def test_stand_alone_form_errors_state_the_shapes(outputs: Any, message: str) -> None:
    with pytest.raises(ValueError, match=exactly(message)):
        WeightedFusion(3)(torch.zeros(7, 6), outputs)


def test_stand_alone_form_of_an_unregistered_layer_class_is_refused() -> None:
    class Renamed(WeightedFusion):
        """A subclass is not the registered layer class: the registry has no reference maths for it."""

    with pytest.raises(TypeError, match=exactly("Renamed is not a registered fusion method's layer")):
        Renamed(2)(torch.zeros(7, 6), [torch.zeros(7, 6)] * 2)


# ------------------------------------------------------------------------------- the default regulariser
@pytest.mark.parametrize(
    ("layer", "dtype"),
    [
        (WeightedFusion(HIDDEN, 3).double(), torch.float64),  # parameters only
        (WeightedFusion(HIDDEN, 3, learnable=False).double(), torch.float64),  # buffers only
        (FusionLayer(HIDDEN, 2), torch.float32),  # no tensors at all
    ],
    ids=["parameters", "buffers", "none"],
)
def test_default_regularization_is_a_zero_scalar_like_the_layers_tensors(layer: FusionLayer, dtype) -> None:
    loss = layer.regularization_loss()
    torch.testing.assert_close(loss, torch.zeros((), dtype=dtype), rtol=0, atol=0)


def test_fusion_with_no_layers_regularises_to_a_zero_scalar(make_model, randomise) -> None:
    model = AdapterModel(make_model("bert"))
    model.add_adapter("a0", AdapterConfig(bottleneck_size=4), activate=False)
    fuse = add_fusion(model, FusionConfig(adapter_names=("a0",), fusion_layers=(), name="nothing"))
    assert not fuse.fusion_layers()
    torch.testing.assert_close(fuse.regularization_loss(), torch.zeros(()), rtol=0, atol=0)
    assert fuse.extra_repr() == "name='nothing', adapters=['a0']"
    assert repr(fuse).startswith("Fuse(\n  name='nothing', adapters=['a0']\n")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"))])  # fmt: skip
def test_select_takes_the_subsets_entries_on_the_tensors_device(device: str) -> None:
    layer = weighted().to(device)
    logits = layer.logits.detach()
    assert layer.select(logits) is logits  # no subset: all adapters
    layer.adapter_subset = (0, 2)
    torch.testing.assert_close(layer.select(logits), torch.tensor([0.9, 0.2], dtype=torch.float64, device=device))
    table = torch.arange(6.0, device=device).reshape(2, 3)
    torch.testing.assert_close(layer.select(table, dim=1), torch.tensor([[0.0, 2.0], [3.0, 5.0]], device=device))


# -------------------------------------------------------------------------------------- the eval memo
def attention_point(dtype: torch.dtype = torch.float32) -> tuple[AttentionFusion, list[nn.Module], torch.Tensor]:
    """An attention fusion with random (non-symmetric) weights over three random adapters, in eval."""
    adapters, hidden = temperature_setup()
    layer = AttentionFusion(HIDDEN, 3, attention_dropout=0.0)
    perturb_(layer, seed=5, std=0.3)
    return layer.to(dtype).eval(), [adapter.to(dtype) for adapter in adapters], hidden.to(dtype)


@torch.no_grad()
def test_memo_is_keyed_by_the_autocast_state() -> None:
    """The products under autocast are computed in its dtype: a memo filled under another autocast state (or
    none) must not be reused, so every memoised output equals the one computed afresh in that state."""
    layer, adapters, hidden = attention_point()
    contexts: dict[str, Callable[[], Any]] = {
        "off": contextlib.nullcontext,
        "bfloat16": lambda: torch.autocast("cpu", dtype=torch.bfloat16),
        "float16": lambda: torch.autocast("cpu", dtype=torch.float16),
    }
    fresh = {}
    for name, context in contexts.items():
        layer._products_cache.clear()
        with context():
            fresh[name] = layer(hidden, adapters).hidden
    assert len({tuple(out.flatten().tolist()) for out in fresh.values()}) == 3  # the three states differ
    for name in ("off", "bfloat16", "off", "float16", "bfloat16", "float16"):
        with contexts[name]():
            torch.testing.assert_close(layer(hidden, adapters).hidden, fresh[name], rtol=0, atol=0)

    # a disabled autocast block changes nothing: the memo of the plain state is reused
    layer(hidden, adapters)
    hits, misses = layer._products_cache.hits, layer._products_cache.misses
    with torch.autocast("cpu", dtype=torch.float16, enabled=False):
        torch.testing.assert_close(layer(hidden, adapters).hidden, fresh["off"], rtol=0, atol=0)
    assert (layer._products_cache.hits, layer._products_cache.misses) == (hits + 1, misses)


@torch.no_grad()
def test_memo_sees_a_weight_replaced_by_a_view_of_the_same_storage() -> None:
    """A new parameter over the same storage (here the transpose of the value matrix) has the old one's address
    and version counter: only the weights' identity tells the memo that the products are stale."""
    layer, adapters, hidden = attention_point(torch.float64)
    reference = FUSION_METHODS.get("attention").reference
    before = layer(hidden, adapters).hidden  # fills the memo
    value = layer.value.weight
    layer.value.weight = nn.Parameter(value.detach().t())
    assert layer.value.weight.data_ptr() == value.data_ptr() and layer.value.weight._version == value._version
    expected = reference(layer, hidden, adapters).hidden
    assert (expected - before).abs().max() > 0.01  # the transpose matters
    torch.testing.assert_close(layer(hidden, adapters).hidden, expected)


@torch.no_grad()
def test_pickled_layer_starts_with_an_empty_memo() -> None:
    layer, adapters, hidden = attention_point()
    expected = layer(hidden, adapters).hidden
    layer(hidden, adapters)
    assert (layer._products_cache.hits, layer._products_cache.misses) == (1, 1)

    clone = pickle.loads(pickle.dumps(layer))
    assert (clone._products_cache.hits, clone._products_cache.misses) == (0, 0)
    for _ in range(2):
        torch.testing.assert_close(clone(hidden, adapters).hidden, expected, rtol=0, atol=0)
    assert (clone._products_cache.hits, clone._products_cache.misses) == (1, 1)


@torch.no_grad()
def test_memo_counts_every_hit_and_every_miss() -> None:
    layer, adapters, hidden = attention_point()
    expected = layer(hidden, adapters).hidden  # miss
    for _ in range(2):
        torch.testing.assert_close(layer(hidden, adapters).hidden, expected, rtol=0, atol=0)  # hits
    adapters[0].up.weight.add_(0.5)  # a new version: the products are stale
    changed = layer(hidden, adapters).hidden  # miss
    assert (changed - expected).abs().max() > 0.01
    assert (layer._products_cache.hits, layer._products_cache.misses) == (2, 2)


def test_inference_tensors_are_never_memoised() -> None:
    """Weights made under ``inference_mode`` have no version counter: every call computes the products afresh."""
    with torch.inference_mode():
        layer, adapters, hidden = attention_point(torch.float64)
        outputs = [layer(hidden, adapters).hidden for _ in range(2)]
        expected = FUSION_METHODS.get("attention").reference(layer, hidden, adapters).hidden
    for output in outputs:
        torch.testing.assert_close(output, expected)
    assert (layer._products_cache.hits, layer._products_cache.misses) == (0, 0)


def test_ffn_input_is_ignored_when_no_adapter_reads_it() -> None:
    layer, adapters, hidden = attention_point()
    expected = layer(hidden, adapters).hidden
    unread = torch.randn(3, 5)  # not even hidden-shaped: nothing reads it
    torch.testing.assert_close(layer(hidden, adapters, unread).hidden, expected, rtol=0, atol=0)


@pytest.mark.parametrize("parallel", [False, True], ids=["hidden", "parallel"])
@pytest.mark.parametrize("num_adapters", [1, 2])
def test_gate_rows_without_a_bias_get_a_zero_bias(parallel: bool, num_adapters: int) -> None:
    """Per-token rows of a method with no bias (gates built with ``bias=False``) are given a zero bias, stacked
    under the adapters' down-projections when every adapter reads ``h``, kept apart otherwise."""
    torch.manual_seed(0)
    adapters = [BottleneckAdapter(HIDDEN, 4, initialization="bert") for _ in range(num_adapters)]
    pack = AdapterPack(adapters, [parallel] * num_adapters, HIDDEN)
    products = GatingFusion(HIDDEN, num_adapters, bias=False)._all_products(pack)
    down_bias = torch.cat([adapter.down.bias for adapter in adapters])
    if parallel:
        torch.testing.assert_close(products["extra_bias"], torch.zeros(num_adapters), rtol=0, atol=0)
        torch.testing.assert_close(products["down_bias.0"], down_bias, rtol=0, atol=0)
    else:
        assert "extra_bias" not in products
        expected = torch.cat([down_bias, torch.zeros(num_adapters)])
        torch.testing.assert_close(products["hidden_bias"], expected, rtol=0, atol=0)


@pytest.mark.parametrize("parallel", [False, True], ids=["hidden", "parallel"])
def test_a_method_without_rows_gets_no_extra_bias(parallel: bool) -> None:
    torch.manual_seed(0)
    adapters = [BottleneckAdapter(HIDDEN, 4, initialization="bert") for _ in range(2)]
    products = WeightedFusion(HIDDEN, 2)._all_products(AdapterPack(adapters, [parallel] * 2, HIDDEN))
    assert "extra_bias" not in products and products["extra_weight"].shape == (0, HIDDEN)


# ---------------------------------------------------------------------------------------- building a fusion
def two_adapter_model(make_model: Callable) -> AdapterModel:
    model = AdapterModel(make_model("bert"))
    for name in ("a0", "a1"):
        model.add_adapter(name, AdapterConfig(bottleneck_size=4), activate=False)
    return model


@pytest.mark.parametrize(
    ("config", "names", "error", "message"),
    [
        ({"adapter_names": ("a0",)}, None, TypeError, "config must be a FusionConfig; got dict"),
        (FusionConfig(), (), ValueError,
         "a fusion needs at least one adapter; got adapter_names=() (set adapter_names or adapter_paths)"),
        (FusionConfig(), ["a0", "a1", "a0"], ValueError, "adapter names must be distinct; got ['a0', 'a1', 'a0']"),
    ],
    ids=["not-a-config", "no-names", "repeated-name"],
)  # fmt: skip
def test_build_fusion_errors_name_the_values(make_model, config: Any, names: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=exactly(message)):
        build_fusion(config, two_adapter_model(make_model).adapters, names)


def test_unknown_adapter_in_a_model_with_none_says_none(make_model) -> None:
    manager = AdapterModel(make_model("bert")).adapters
    with pytest.raises(KeyError, match=exactly(repr("no adapter named 'x' in the model; available: none"))):
        build_fusion(FusionConfig(adapter_names=("x",)), manager)


def test_adapter_of_another_hidden_size_is_named_with_its_point(make_model) -> None:
    manager = two_adapter_model(make_model).adapters
    key = next(iter(manager.adapters["a1"]))
    manager.adapters["a1"][key] = BottleneckAdapter(HIDDEN + 2, 4)
    message = f"adapter 'a1' at point {key!r} has hidden size {HIDDEN + 2}; the model and the fusion have {HIDDEN}"
    with pytest.raises(ValueError, match=exactly(message)):
        build_fusion(FusionConfig(adapter_names=("a0", "a1")), manager)


def test_fusion_is_built_on_the_base_models_device_and_dtype(make_model) -> None:
    """The fusion layers follow the base model (the meta device stands in for an accelerator here)."""
    model = AdapterModel(make_model("bert").to("meta", torch.float64))
    model.add_adapter("a0", AdapterConfig(bottleneck_size=4), activate=False)
    fuse = build_fusion(FusionConfig(adapter_names=("a0",)), model.adapters)
    assert {(p.device.type, p.dtype) for p in fuse.parameters()} == {("meta", torch.float64)}


def test_shared_weights_refusal_names_the_point_missing_an_adapter(make_model) -> None:
    model = AdapterModel(make_model("bert"))
    model.add_adapter("a0", AdapterConfig(bottleneck_size=4), activate=False)
    model.add_adapter("a1", AdapterConfig(bottleneck_size=4, layers=(1,)), activate=False)
    key = next(iter(model.adapters.adapters["a0"]))  # a layer-0 point: a1 is not there
    message = (f"weight_sharing='shared' needs every fused adapter at every fused point, but point {key!r} holds 1 "
               "of 2; use weight_sharing='per_layer'")  # fmt: skip
    config = FusionConfig(fusion_method="weighted", adapter_names=("a0", "a1"), weight_sharing="shared")
    with pytest.raises(ValueError, match=exactly(message)):
        build_fusion(config, model.adapters)


def test_adapter_paths_need_the_model_not_its_manager(make_model, tmp_path: Path) -> None:
    manager = two_adapter_model(make_model).adapters
    message = "loading adapter_paths needs the AdapterModel, not its AdapterManager"
    with pytest.raises(TypeError, match=exactly(message)):
        add_fusion(manager, FusionConfig(adapter_paths=(str(tmp_path),)))


def test_running_a_fusion_after_removing_one_of_its_adapters_names_it(make_model) -> None:
    model = two_adapter_model(make_model)
    fuse = add_fusion(model, FusionConfig(adapter_names=("a0", "a1"), fusion_layers=(0,), name="f"))
    model.adapters.remove_adapter("a1")
    key = next(iter(fuse.layers))
    message = (f"fusion 'f' fuses adapter 'a1' at point {key!r}, but the model has no such adapter there; "
               "adapters: ['a0']")  # fmt: skip
    with pytest.raises(KeyError, match=exactly(repr(message))):
        model.base(inputs_embeds=torch.randn(1, 2, HIDDEN))


# -------------------------------------------------------------------------------------------- the config
def test_settings_read_as_attributes_and_other_methods_settings_refused() -> None:
    config = FusionConfig(fusion_method="weighted", adapter_names=("a", "b"), learnable_weights=False)
    assert config.learnable_weights is False and config.weight_sharing == "per_layer"
    message = "num_attention_heads is a setting of fusion_method='attention'; this config has fusion_method='weighted'"
    with pytest.raises(AttributeError, match=exactly(message)):
        _ = config.num_attention_heads
    with pytest.raises(AttributeError, match=exactly("'FusionConfig' object has no attribute 'top_kk'")):
        _ = config.top_kk
    assert not hasattr(config, "_private")


def test_to_dict_is_flat_with_the_chosen_methods_settings() -> None:
    from adapter_fusion import __version__

    config = FusionConfig(fusion_method="weighted", adapter_names=("a", "b"), learnable_weights=False,
                          fixed_weights=(1.0, 3.0), fusion_layers=(1,))  # fmt: skip
    assert config.to_dict() == {
        "config_type": "fusion", "library_version": __version__, "adapter_paths": [], "adapter_names": ["a", "b"],
        "fusion_method": "weighted", "name": "fusion", "fusion_layers": [1], "temperature": 1.0,
        "temperature_min": 1.0, "temperature_decay": 0.0, "freeze_adapters_during_fusion": True,
        "learnable_weights": False, "weight_sharing": "per_layer", "weight_initialization": "uniform",
        "fixed_weights": [1.0, 3.0],
    }  # fmt: skip
    assert FusionConfig.from_dict(config.to_dict()) == config


def test_from_dict_refuses_a_non_dict_and_reads_old_dicts_under_the_default_method() -> None:
    with pytest.raises(TypeError, match=exactly("FusionConfig.from_dict expects a dict; got list")):
        FusionConfig.from_dict([("fusion_method", "weighted")])  # type: ignore[arg-type]
    # written by the library before methods owned their settings: every method's settings, no fusion_method
    old = {"library_version": "0.0.1", "adapter_names": ["a", "b"], "num_attention_heads": 2,
           "learnable_weights": True, "gate_bias": True, "top_k": 1}  # fmt: skip
    config = FusionConfig.from_dict(old)
    assert config.fusion_method == "attention" and config.num_attention_heads == 2
    assert config == FusionConfig(adapter_names=("a", "b"), num_attention_heads=2)


def test_inapplicable_fields_are_exactly_the_other_methods_settings() -> None:
    why = "only fusion_method={!r} reads it; got fusion_method='weighted'"
    assert FusionConfig(fusion_method="weighted").inapplicable_fields() == {
        "num_attention_heads": why.format("attention"), "attention_dropout": why.format("attention"),
        "value_initialization": why.format("attention"), "value_regularization": why.format("attention"),
        "gate_activation": why.format("gating"), "gate_bias": why.format("gating"),
        "top_k": why.format("sparse"), "routing": why.format("sparse"), "load_balancing": why.format("sparse"),
    }  # fmt: skip


@pytest.mark.parametrize("layers", [(0, 1.5), (True,), ("1",)])
def test_fusion_layers_must_be_integers(layers: tuple[Any, ...]) -> None:
    message = f"fusion_layers must be a sequence of layer indices >= 0, or None; got {layers!r}"
    with pytest.raises(ValueError, match=exactly(message)):
        FusionConfig(fusion_layers=layers)


# ------------------------------------------------------------------------------ loading the fused adapters
def test_adapters_loaded_for_a_fusion_come_inactive_and_without_heads(make_model, randomise, tmp_path: Path) -> None:
    source = AdapterModel(make_model("bert"))
    paths = []
    for i in range(2):
        source.add_adapter(f"a{i}", AdapterConfig(bottleneck_size=4), activate=False)
        randomise(source.adapters.adapters[f"a{i}"], seed=10 + i)
        source.add_classification_head(f"a{i}", num_labels=2)
        paths.append(str(save_adapter(source, f"a{i}", tmp_path / f"a{i}", head=f"a{i}")))

    model = AdapterModel(make_model("bert"))
    fuse = add_fusion(model, FusionConfig(adapter_paths=tuple(paths), adapter_names=("x", "y")))
    assert fuse.adapter_names == ("x", "y") and model.adapters.list_adapters() == ["x", "y"]
    assert model.adapters.active == () and len(model.heads) == 0 and model.active_head is None
    embeds = torch.randn(2, 5, HIDDEN)
    remove_fusion(model)  # back to stacking the active adapters: none
    with torch.no_grad():
        torch.testing.assert_close(model.base(inputs_embeds=embeds).last_hidden_state,
                                   make_model("bert")(inputs_embeds=embeds).last_hidden_state)  # fmt: skip
