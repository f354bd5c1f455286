"""Fusion over LoRA adapters and over LoRA + bottleneck mixes, for every registered fusion method.

What is fused (see ``FusionLayer.forward``): at each point (a linear layer a LoRA adapts, or a sub-layer output,
which a LoRA on that sub-layer's output linear layer shares with bottleneck adapters), each adapter's
contribution ``up_i`` to that tensor: ``s_i B_i A_i x`` for a LoRA (``x`` the linear layer's input), the
bottleneck's ``up(down(.))`` otherwise; the method mixes them as it mixes bottleneck adapters.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from adapter_fusion.adapters import AdapterConfig, LoraAdapter, LoraConfig
from adapter_fusion.fusion import FUSION_METHODS, FusionConfig, FusionPoint, add_fusion
from adapter_fusion.models import AdapterModel
from adapter_fusion.models.fusion_model import FusionModel
from conftest import method_settings
from test_fusion import assert_fast_equals_reference_with_gradients, inputs, perturb_, reference_composition, run, use

METHODS = FUSION_METHODS.names()
HIDDEN = 32  # the tiny models' hidden size
MIXES: dict[str, tuple[Any, ...]] = {
    # LoRA adapters of different ranks and targets: points hold different subsets
    "lora": (
        LoraConfig(r=4, alpha=8.0, target_modules=("query", "value")),
        LoraConfig(r=2, alpha=2.0, target_modules=("query", "output.dense")),
        LoraConfig(r=3, alpha=6.0, use_rslora=True, target_modules=("query", "key", "intermediate.dense")),
    ),
    # LoRA on both sub-layer output linear layers shares the Houlsby adapter's two points
    "lora+houlsby": (
        LoraConfig(r=4, target_modules=("attention.output.dense", "output.dense")),
        AdapterConfig(placement="houlsby", bottleneck_size=6, activation="gelu"),
        LoraConfig(r=2, target_modules=("query", "dense")),
    ),
    # the FFN-output point holds adapters reading all three sources: h, the FFN input, the linear layer's input
    "lora+parallel": (
        AdapterConfig(placement="parallel", bottleneck_size=4, scaling=2.0),
        LoraConfig(r=2, target_modules=("output.dense", "query")),
        AdapterConfig(placement="pfeiffer", bottleneck_size=8),
    ),
}


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Any:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def mixed_model(make_model: Callable, randomise: Callable, configs: tuple[Any, ...], dtype=torch.float64):
    base = make_model("bert", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0).to(dtype)
    model = AdapterModel(base)
    for i, config in enumerate(configs):
        model.add_adapter(f"a{i}", config, activate=False)
        randomise(model.adapters.adapters[f"a{i}"], seed=10 + i, std=0.3)
    return model


def config_for(method: str, n: int, **overrides: Any) -> FusionConfig:
    settings: dict[str, Any] = dict(fusion_method=method, adapter_names=tuple(f"a{i}" for i in range(n)))
    settings["attention_dropout"] = 0.0
    return FusionConfig(**method_settings(method, **{**settings, **overrides}))


@pytest.mark.parametrize("heads", [1, 4])
@pytest.mark.parametrize("mix", list(MIXES))
@pytest.mark.parametrize("method", METHODS)
def test_fast_path_equals_reference_with_gradients(make_model, randomise, method: str, mix: str, heads: int) -> None:
    configs = MIXES[mix]
    model = mixed_model(make_model, randomise, configs)
    fuse = add_fusion(model, config_for(method, len(configs), num_attention_heads=heads))
    assert any("_attention_self_" in key for key in fuse.layers)  # LoRA-only points are fused too
    fast_grads = assert_fast_equals_reference_with_gradients(model, fuse)
    assert any(".lora_A." in name and grad.abs().sum() > 0 for name, grad in fast_grads.items())


@pytest.mark.parametrize("method", METHODS)
def test_fast_path_equals_reference_in_eval_float32(make_model, randomise, method: str) -> None:
    model = mixed_model(make_model, randomise, MIXES["lora+houlsby"], dtype=torch.float32)
    fuse = add_fusion(model, config_for(method, 3, num_attention_heads=4))
    perturb_(fuse)
    model.eval()
    batch = inputs(torch.float32)
    with torch.no_grad():
        fast = run(model, batch)
        fast_again = run(model, batch)  # from the memo of weight products
        use(model, reference_composition(fuse))
        ref = run(model, batch)
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-5)
    assert torch.equal(fast, fast_again)


@pytest.mark.parametrize("method", METHODS)
def test_fusing_one_lora_equals_that_lora(make_model, randomise, method: str) -> None:
    model = mixed_model(make_model, randomise, (LoraConfig(r=4, target_modules=("query", "value", "dense")),))
    batch = inputs()
    with torch.no_grad():
        model.adapters.set_active("a0")
        alone = run(model, batch)
        add_fusion(model, config_for(method, 1, **FUSION_METHODS.get(method).single_adapter_identity))
        model.adapters.set_active()
        fused = run(model, batch)
        with model.adapters.disable():
            base = run(model, batch)
    assert not torch.allclose(alone, base)
    torch.testing.assert_close(fused, alone)


def test_lora_input_dropout_draws_like_the_reference() -> None:
    """LoRA adapters with their own input dropout: one mask per adapter, in order, like running them one by one."""
    torch.manual_seed(0)
    adapters = [LoraAdapter(2 * HIDDEN, HIDDEN, r, scaling=2.0, dropout=p).double().train()
                for r, p in ((4, 0.0), (2, 0.3), (4, 0.0), (3, 0.5))]  # fmt: skip
    for adapter in adapters:
        perturb_(adapter)
    for method in METHODS:
        if not FUSION_METHODS.get(method).dense:
            continue  # runs only the chosen adapters, on their tokens: masks of other shapes than the reference's
        config = FusionConfig(fusion_method=method)
        layer = FUSION_METHODS.get(method).build(config, FusionPoint("0_x", HIDDEN, (0, 1, 2, 3), 4), {})
        layer.double().train()
        perturb_(layer)
        hidden = torch.randn(2, 5, HIDDEN, dtype=torch.float64)
        module_input = torch.randn(2, 5, 2 * HIDDEN, dtype=torch.float64)
        torch.manual_seed(1)
        fast = layer(hidden, adapters, module_input=module_input).hidden
        torch.manual_seed(1)
        ref = FUSION_METHODS.get(method).reference(layer, hidden, adapters, module_input=module_input).hidden
        torch.testing.assert_close(fast, ref, msg=method)
        torch.manual_seed(2)
        assert not torch.allclose(layer(hidden, adapters, module_input=module_input).hidden, fast)


def test_lora_fusion_errors_name_what_is_missing() -> None:
    config = FusionConfig(fusion_method="weighted")
    layer = FUSION_METHODS.get("weighted").build(config, FusionPoint("0_x", HIDDEN, (0,), 1), {})
    adapter = LoraAdapter(2 * HIDDEN, HIDDEN, 4)
    with pytest.raises(ValueError, match=r"LoRA adapters need module_input of shape \(2, 5, 64\); got None"):
        layer(torch.zeros(2, 5, HIDDEN), [adapter])
    with pytest.raises(ValueError, match="fusion's hidden size 32; got adapters with output sizes \\[64\\]"):
        layer(torch.zeros(2, 5, HIDDEN), [LoraAdapter(HIDDEN, 2 * HIDDEN, 4)])


def test_save_and_reload_a_mixed_fusion(tmp_path: Path, make_model, randomise, inputs_for) -> None:
    base = make_model("bert")
    model = FusionModel(base)
    for i, config in enumerate(MIXES["lora+houlsby"]):
        model.add_adapter(f"a{i}", config, activate=False)
        randomise(model.adapters.adapters[f"a{i}"], seed=i)
    fuse = model.add_fusion(config_for("attention", 3))
    perturb_(fuse)
    model.add_classification_head("task", 2)
    model.eval()
    batch = inputs_for(base)
    expected = model(**batch, return_fusion_weights=True)
    assert "0_attention_self_query" in expected.fusion_weights
    model.save_fusion(tmp_path / "fusion")
    base.save_pretrained(tmp_path / "base")
    torch.manual_seed(7)
    reloaded = FusionModel.load_fusion(tmp_path / "fusion", model=str(tmp_path / "base"))
    torch.testing.assert_close(reloaded(**batch).logits, expected.logits, atol=1e-6, rtol=0)  # sdpa vs eager


def test_fusion_training_changes_only_fusion_weights(make_model, randomise, inputs_for) -> None:
    model = FusionModel(make_model("bert", hidden_dropout_prob=0.0))
    for i, config in enumerate(MIXES["lora"]):
        model.add_adapter(f"a{i}", config, activate=False)
        randomise(model.adapters.adapters[f"a{i}"], seed=i)
    model.add_fusion(config_for("gating", 3))
    model.add_classification_head("task", 2, dropout=0.0)
    model.train_fusion("task")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model.train()
    loss = model(**inputs_for(model.base), labels=torch.tensor([0, 1, 1])).loss
    loss.backward()
    optimizer.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(before[k], v)}
    assert any(k.startswith("adapters.composition.") for k in changed)
    assert all(k.startswith(("adapters.composition.", "heads.")) for k in changed)
