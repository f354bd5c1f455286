"""PEFT LoRA import: directories written by PEFT (tests/fixtures/peft, made by make_fixtures.py in a separate
environment: PEFT is never imported here) load through ``load_adapter`` and compute PEFT's recorded outputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

from adapter_fusion.adapters import LoraConfig
from adapter_fusion.cli import main
from adapter_fusion.fusion import FusionConfig
from adapter_fusion.models import AdapterModel, load_adapter, read_adapter_config
from adapter_fusion.models.fusion_model import FusionModel

FIXTURES = Path(__file__).parent / "fixtures" / "peft"
CASES = ("bert_query_value", "bert_all_linear", "bert_layer_1", "llama_all_linear", "gpt2_attention_mlp")


def fixture_model(case: str) -> AdapterModel:
    return AdapterModel(AutoModel.from_pretrained(FIXTURES / case / "base", attn_implementation="eager")).eval()


@pytest.mark.parametrize("case", CASES)
def test_peft_lora_reproduces_peft_outputs(case: str) -> None:
    model = fixture_model(case)
    expected = load_file(FIXTURES / case / "expected.safetensors")
    inputs = {"input_ids": expected["input_ids"], "attention_mask": expected["attention_mask"]}
    with torch.no_grad():
        torch.testing.assert_close(
            model.encode(**inputs).last_hidden_state, expected["base_last_hidden_state"], atol=1e-5, rtol=0
        )
        name = load_adapter(model, FIXTURES / case / "adapter", "peft")
        assert name == "peft" and isinstance(model.adapters.configs["peft"], LoraConfig)
        out = model.encode(**inputs).last_hidden_state
    torch.testing.assert_close(out, expected["last_hidden_state"], atol=1e-5, rtol=0)
    assert (expected["last_hidden_state"] - expected["base_last_hidden_state"]).abs().max() > 1e-2


def test_imported_config_follows_peft() -> None:
    model = fixture_model("bert_all_linear")
    load_adapter(model, FIXTURES / "bert_all_linear" / "adapter", "peft")
    config = model.adapters.configs["peft"]
    peft = json.loads((FIXTURES / "bert_all_linear" / "adapter" / "adapter_config.json").read_text())
    assert (config.r, config.alpha, config.dropout, config.use_rslora) == (2, 5.0, 0.1, True)
    assert config.scaling == pytest.approx(peft["lora_alpha"] / peft["r"] ** 0.5)
    assert set(model.adapters.adapters["peft"].keys()) >= {"0_attention", "0_ffn", "0_intermediate_dense"}
    partial = fixture_model("bert_layer_1")
    load_adapter(partial, FIXTURES / "bert_layer_1" / "adapter", "peft")
    assert partial.adapters.configs["peft"].layers == (1,)


def test_imported_adapter_saves_and_reloads_in_our_format(tmp_path: Path) -> None:
    model = fixture_model("llama_all_linear")
    expected = load_file(FIXTURES / "llama_all_linear" / "expected.safetensors")
    load_adapter(model, FIXTURES / "llama_all_linear" / "adapter", "peft")
    from adapter_fusion.models import save_adapter

    save_adapter(model, "peft", tmp_path / "ours")
    other = fixture_model("llama_all_linear")
    load_adapter(other, tmp_path / "ours")
    with torch.no_grad():
        out = other.encode(input_ids=expected["input_ids"], attention_mask=expected["attention_mask"])
    torch.testing.assert_close(out.last_hidden_state, expected["last_hidden_state"], atol=1e-5, rtol=0)


def test_fusion_over_peft_directories() -> None:
    model = FusionModel(AutoModel.from_pretrained(FIXTURES / "bert_query_value" / "base")).eval()
    source = FIXTURES / "bert_query_value" / "adapter"
    model.add_fusion(FusionConfig(adapter_paths=(str(source), str(source)), adapter_names=("a", "b")))
    assert model.fusion is not None and sorted(model.fusion.adapter_names) == ["a", "b"]
    assert read_adapter_config(source)["adapter_kind"] == "lora"


@pytest.mark.parametrize(("case", "peft_type"), [("ia3", "IA3"), ("prefix", "PREFIX_TUNING")])
def test_unsupported_peft_types_are_named(case: str, peft_type: str, capsys: pytest.CaptureFixture) -> None:
    model = fixture_model("bert_query_value")
    with pytest.raises(ValueError, match=rf"peft_type '{peft_type}'; supported: LORA"):
        load_adapter(model, FIXTURES / case)
    assert model.adapters.list_adapters() == []
    code = main(["evaluate", "--adapter", str(FIXTURES / case), "--task", "sst2"])
    assert code == 2 and f"peft_type '{peft_type}'; supported: LORA" in capsys.readouterr().err


def test_unsupported_lora_options_and_pickles_are_refused(tmp_path: Path) -> None:
    model = fixture_model("bert_query_value")
    source = FIXTURES / "bert_query_value" / "adapter"
    for key, value, named in (("use_dora", True, "DoRA"), ("bias", "all", "bias='all'"),
                              ("rank_pattern", {"query": 2}, "rank_pattern")):  # fmt: skip
        directory = tmp_path / key
        shutil.copytree(source, directory)
        config = json.loads((directory / "adapter_config.json").read_text())
        config[key] = value
        (directory / "adapter_config.json").write_text(json.dumps(config))
        with pytest.raises(ValueError, match=rf"uses .*{named}.*; supported: plain LoRA"):
            load_adapter(model, directory)
    pickled = tmp_path / "bin"
    shutil.copytree(source, pickled)
    (pickled / "adapter_model.safetensors").rename(pickled / "adapter_model.bin")
    with pytest.raises(FileNotFoundError, match="only safetensors weights are read"):
        load_adapter(model, pickled)
    assert model.adapters.list_adapters() == []


def test_peft_weights_outside_the_layers_are_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    directory = tmp_path / "pooler"
    shutil.copytree(FIXTURES / "bert_query_value" / "adapter", directory)
    weights = load_file(directory / "adapter_model.safetensors")
    weights["base_model.model.pooler.dense.lora_A.weight"] = torch.zeros(4, 32)
    save_file(weights, str(directory / "adapter_model.safetensors"))
    model = fixture_model("bert_query_value")
    with pytest.raises(ValueError, match=r"can't place: \['base_model.model.pooler.dense.lora_A.weight'\]"):
        load_adapter(model, directory)
