"""LoRA as an adapter kind: identity at start, the hand-computed maths, detach/disable give the base back, saving
and reloading (with the adapter-kind discriminator), training changes only the LoRA and head weights, errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from adapter_fusion.adapters import AdapterConfig, LoraAdapter, LoraConfig
from adapter_fusion.models import AdapterModel, load_adapter, save_adapter
from adapter_fusion.models.manager import AdapterManager
from adapter_fusion.training.trainer import parameter_kind


def last_hidden(model: nn.Module, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).last_hidden_state


def test_new_lora_is_identity_and_detach_gives_the_base_back(tiny_model: nn.Module, batch: dict, randomise) -> None:
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    base = last_hidden(tiny_model, batch)
    manager = AdapterManager(tiny_model)
    manager.add_adapter("lora", LoraConfig(r=4))
    assert manager.adapters["lora"], "the architecture's default targets were found"
    for module in manager.adapters["lora"].values():
        assert isinstance(module, LoraAdapter) and torch.count_nonzero(module.lora_B.weight) == 0
    assert torch.equal(last_hidden(tiny_model, batch), base)
    randomise(manager.adapters["lora"])
    adapted = last_hidden(tiny_model, batch)
    assert not torch.allclose(adapted, base, atol=1e-4)
    with manager.disable():
        assert torch.equal(last_hidden(tiny_model, batch), base)
    manager.detach()
    assert torch.equal(last_hidden(tiny_model, batch), base)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in tiny_model.modules())
    assert tiny_model.state_dict().keys() == before.keys()
    assert all(torch.equal(before[k], v) for k, v in tiny_model.state_dict().items())
    manager.attach()
    assert torch.equal(last_hidden(tiny_model, batch), adapted)


def test_lora_equals_hand_computed_low_rank_update(make_model: Callable, inputs_for: Callable, randomise) -> None:
    """LoRA on BERT's query, FFN input and FFN output equals the same model with W + (alpha / r) B A merged."""
    base = make_model("bert")
    batch = inputs_for(base)
    model = AdapterModel(base)
    config = LoraConfig(r=3, alpha=6.0, target_modules=("query", "intermediate.dense", "output.dense"))
    model.add_adapter("lora", config)
    randomise(model.adapters.adapters["lora"], std=0.3)
    adapted = model.encode(**batch).last_hidden_state
    model.adapters.detach()
    keys = {"0_attention_self_query", "0_intermediate_dense", "0_ffn", "1_attention_self_query",
            "1_intermediate_dense", "1_ffn"}  # fmt: skip
    assert set(model.adapters.adapters["lora"].keys()) == keys  # 'output.dense' is the FFN output only
    with torch.no_grad():
        for layer_index, layer in enumerate(base.encoder.layer):
            for path, location in (("attention.self.query", "attention_self_query"),
                                   ("intermediate.dense", "intermediate_dense"), ("output.dense", "ffn")):  # fmt: skip
                lora = model.adapters.adapters["lora"][f"{layer_index}_{location}"]
                layer.get_submodule(path).weight += 2.0 * lora.lora_B.weight @ lora.lora_A.weight
        merged = base(**batch).last_hidden_state
    torch.testing.assert_close(adapted, merged, atol=1e-5, rtol=1e-5)


def test_lora_and_bottleneck_stack_on_one_model(make_model: Callable, inputs_for: Callable, randomise) -> None:
    base = make_model("bert")
    batch = inputs_for(base)
    model = AdapterModel(base)
    model.add_adapter("bn", AdapterConfig(bottleneck_size=4), activate=False)
    model.add_adapter("lora", LoraConfig(r=2, target_modules=("output.dense",)), activate=False)
    randomise(model.adapters.adapters["bn"], seed=1)
    randomise(model.adapters.adapters["lora"], seed=2)
    both = model.encode(["lora", "bn"], **batch).last_hidden_state
    alone = [model.encode(name, **batch).last_hidden_state for name in ("lora", "bn")]
    assert not torch.allclose(both, alone[0], atol=1e-4) and not torch.allclose(both, alone[1], atol=1e-4)
    # they share the FFN-output point: LoRA adds s B A x to it, then the bottleneck adapter reads the sum
    assert set(model.adapters.adapters["lora"].keys()) == {"0_ffn", "1_ffn"}


def test_save_reload_with_kind_discriminator(tmp_path: Path, make_model: Callable, inputs_for: Callable, randomise):
    model = AdapterModel(make_model("bert"))
    batch = inputs_for(model.base)
    model.add_adapter("lora", LoraConfig(r=4, alpha=16.0, target_modules=("query", "value", "dense"), layers=(1,)))
    model.add_classification_head("lora", 3)
    randomise(model.adapters.adapters["lora"])
    expected = model.eval()(**batch).logits
    save_adapter(model, "lora", tmp_path / "lora", head="lora")
    info = json.loads((tmp_path / "lora" / "adapter_config.json").read_text())
    assert info["adapter_kind"] == "lora" and info["adapter"]["config_type"] == "lora_adapter"
    torch.manual_seed(123)
    other = AdapterModel(make_model("bert")).eval()
    assert load_adapter(other, tmp_path / "lora") == "lora"
    assert other.adapters.configs["lora"] == model.adapters.configs["lora"]
    torch.testing.assert_close(other(**batch).logits, expected, atol=0, rtol=0)


def test_older_adapter_config_without_kind_is_a_bottleneck(tmp_path: Path, make_model: Callable) -> None:
    model = AdapterModel(make_model("bert"))
    model.add_adapter("bn", AdapterConfig(bottleneck_size=4))
    save_adapter(model, "bn", tmp_path / "bn")
    path = tmp_path / "bn" / "adapter_config.json"
    info = json.loads(path.read_text())
    del info["adapter_kind"]
    path.write_text(json.dumps(info))
    other = AdapterModel(make_model("bert"))
    load_adapter(other, tmp_path / "bn", allow_modified=True)  # the edited config no longer matches the manifest
    assert other.adapters.configs["bn"] == AdapterConfig(bottleneck_size=4)


def test_trainer_sees_lora_weights_as_adapter_weights(make_model: Callable) -> None:
    model = AdapterModel(make_model("bert"))
    model.add_adapter("lora", LoraConfig(r=2))
    model.add_classification_head("lora", 2)
    model.train_adapter("lora")
    kinds = parameter_kind(model)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert {name for name, kind in kinds.items() if kind == "adapter"} == {
        name for name in trainable if ".lora_" in name
    }
    assert trainable == {name for name, kind in kinds.items() if kind in ("adapter", "head")}


def test_training_changes_only_lora_and_head(make_model: Callable, inputs_for: Callable) -> None:
    model = AdapterModel(make_model("bert", hidden_dropout_prob=0.0))
    batch = inputs_for(model.base)
    model.add_adapter("lora", LoraConfig(r=2, dropout=0.1, target_modules=("query", "value", "output.dense")))
    model.add_classification_head("lora", 2, dropout=0.0)
    model.train_adapter("lora")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    labels = torch.tensor([0, 1, 1])
    losses = []
    model.train()
    for _ in range(5):
        loss = model(**batch, labels=labels).loss
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(before[k], v)}
    assert changed and all(".lora_" in k or k.startswith("heads.") for k in changed)
    assert any(".lora_B." in k for k in changed)
    assert losses[-1] < losses[0]


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        ({"r": 0}, ValueError, "r must be > 0; got 0"),
        ({"r": 2.5}, TypeError, "r must be an integer"),
        ({"alpha": -1.0}, ValueError, "alpha must be > 0"),
        ({"dropout": 1.5}, ValueError, r"dropout must be a number in \[0.0, 1.0\]; got 1.5"),
        ({"target_modules": ()}, ValueError, "target_modules must be a non-empty sequence"),
        ({"layers": ()}, ValueError, "layers must be a non-empty sequence"),
        ({"initialization": "zeros"}, ValueError, "initialization must be one of 'kaiming', 'gaussian'"),
    ],
)
def test_bad_lora_config(overrides: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        LoraConfig(**overrides)


def test_bad_targets_and_config_types_are_named(make_model: Callable) -> None:
    manager = AdapterManager(make_model("bert"))
    with pytest.raises(ValueError, match=r"'nonexistent' matches no linear layer of layer 0; its linear layers: \["):
        manager.add_adapter("a", LoraConfig(target_modules=("nonexistent",)))
    with pytest.raises(ValueError, match=r"adapter layers \[5\] out of range"):
        manager.add_adapter("a", LoraConfig(layers=(5,)))
    with pytest.raises(TypeError, match="config must be one of AdapterConfig, LoraConfig; got dict"):
        manager.add_adapter("a", {"r": 4})  # type: ignore[arg-type]
    assert manager.list_adapters() == []


def test_lora_config_json_round_trip(tmp_path: Path) -> None:
    config = LoraConfig(r=4, alpha=3.0, dropout=0.1, target_modules=("query",), layers=(0,), use_rslora=True)
    config.save(tmp_path / "c.json")
    assert LoraConfig.load(tmp_path / "c.json") == config
    assert config.scaling == pytest.approx(1.5)


# ---------------------------------------------------------------------------------------------------- the CLI
def test_cli_trains_a_lora_adapter_that_reloads_with_identical_outputs(
    tiny_cli_env: dict[str, Path], tmp_path: Path, outputs_at_save
) -> None:
    """`train-adapter --adapter-kind lora` with the `--lora-*` options: a LoRA adapter directory that the pipeline
    reloads and that predicts what the trained model did."""
    from adapter_fusion.cli import main
    from adapter_fusion.inference import FusionPipeline
    from adapter_fusion.models import load_tokenizer, read_adapter_config

    tokenizer = load_tokenizer(str(tiny_cli_env["model"]))
    trained = outputs_at_save(lambda model: FusionPipeline(model, tokenizer).predict("a good film"))
    output = tmp_path / "sst2"
    code = main([
        "train-adapter", "--task", "sst2", "--model", str(tiny_cli_env["model"]), "--data-dir",
        str(tiny_cli_env["data"]), "--output", str(output), "--output-dir", str(tmp_path / "runs"), "--max-steps",
        "3", "--batch-size", "4", "--max-seq-length", "32", "--disable-tqdm", "true", "--adapter-kind", "lora",
        "--lora-r", "4", "--lora-alpha", "8", "--lora-target-modules", "query", "value", "output.dense",
        "--adapter-learning-rate", "1e-2",
    ])  # fmt: skip
    assert code == 0
    info = read_adapter_config(output)
    assert info["adapter_kind"] == "lora"
    assert info["adapter"]["r"] == 4 and info["adapter"]["target_modules"] == ["query", "value", "output.dense"]
    reloaded = FusionPipeline.from_pretrained(output).predict("a good film")
    assert len(trained) == 1 and reloaded == trained[0]


@pytest.mark.parametrize("argv, message", [
    (["--adapter-kind", "lora", "--reduction-factor", "8"], "--reduction-factor set a field of AdapterConfig"),
    (["--lora-r", "4"], "--lora-r set a field of LoraConfig, which does not apply to adapter kind 'bottleneck'"),
    (["--adapter-kind", "prefix"], "adapter kind must be one of 'bottleneck', 'lora'; got 'prefix'"),
])
def test_cli_refuses_options_of_the_other_adapter_kind(
    tiny_cli_env: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    from adapter_fusion.cli import main

    code = main(["train-adapter", "--task", "sst2", "--model", str(tiny_cli_env["model"]), "--data-dir",
                 str(tiny_cli_env["data"]), "--output", str(tmp_path / "out"), *argv])  # fmt: skip
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
