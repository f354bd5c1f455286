"""Multi-task training: task sampling strategies, single-task batches, ``MultiTaskTrainer`` on the one training path
(per-task losses and metrics, adapters per task or shared), saving as standard adapter directories, the CLI.

Toy tasks on a tiny random BERT (hidden 32) with the bundled MiniLM tokenizer; a ``realdata`` CLI smoke run on the
real MiniLM with SST-2 and RTE.
"""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from adapter_fusion.adapters import AdapterConfig
from adapter_fusion.cli import main
from adapter_fusion.inference import FusionPipeline
from adapter_fusion.models import load_tokenizer, read_adapter_config
from adapter_fusion.models.fusion_model import FusionModel
from adapter_fusion.tasks import TaskSpec, get_task_type
from adapter_fusion.tasks.multitask_data import MultiTaskBatches, MultiTaskPreprocessor, sampling_probabilities
from adapter_fusion.training.config import ModelConfig, TrainingConfig
from adapter_fusion.training.multi_task_trainer import SHARED_ADAPTER, MultiTaskConfig, MultiTaskTrainer, TaskSampler
from adapter_fusion.training.trainer import TRAINABLE_WEIGHTS
from conftest import optimizer_rates

SIZES = {"small": 100, "medium": 400, "large": 1600}
DRAWS = 20_000

# made-up words: each toy class has its own group, so the tasks are separable and their inputs are told apart
GROUPS = (
    ("blorp", "zindle", "quaff", "mimsy"),
    ("snark", "grollo", "vexnit", "drubble"),
    ("plonk", "wibble", "fizzgig", "sproing"),
)
TWO = TaskSpec("toy_two", "classification", ("neg", "pos"), False, ("accuracy",), "accuracy", "two toy classes")
THREE = TaskSpec(
    "toy_three", "classification", ("x", "y", "z"), False, ("accuracy", "macro_f1"), "accuracy", "three toy classes"
)
STEPS = 40
EVAL_STEPS = 15  # checkpoints at 15 (mid epoch 1 of 20 batches), 30 and 40


# --------------------------------------------------------------------------- sampling
@pytest.mark.parametrize(
    ("strategy", "temperature", "expected"),
    [
        ("proportional", None, (1 / 21, 4 / 21, 16 / 21)),
        ("temperature", 1.0, (1 / 21, 4 / 21, 16 / 21)),  # T = 1 is proportional
        ("temperature", 2.0, (1 / 7, 2 / 7, 4 / 7)),  # sqrt: 10, 20, 40
        ("temperature", 5.0, tuple(n**0.2 / sum(m**0.2 for m in SIZES.values()) for n in SIZES.values())),
        ("temperature", float("inf"), (1 / 3, 1 / 3, 1 / 3)),  # T -> inf: uniform
    ],
)
def test_sampled_task_shares_match_the_strategy(strategy: str, temperature: float | None, expected: tuple) -> None:
    probabilities = sampling_probabilities(SIZES, strategy, temperature)
    np.testing.assert_allclose(list(probabilities.values()), expected, rtol=1e-12)
    counts = Counter(TaskSampler(SIZES, strategy, temperature, seed=0).draw(DRAWS))
    for name, share in zip(SIZES, expected):
        # 4 standard deviations of a binomial share at 20k draws (<= 0.0142)
        assert abs(counts[name] / DRAWS - share) < 4 * (share * (1 - share) / DRAWS) ** 0.5 + 1e-9, (name, counts)


def test_round_robin_cycles_tasks_exactly() -> None:
    sampler = TaskSampler(SIZES, "round_robin", seed=3)
    draws = sampler.draw(DRAWS - 1) + sampler.draw(1)
    assert draws == [list(SIZES)[i % 3] for i in range(DRAWS)]
    assert sampling_probabilities(SIZES, "round_robin") == dict.fromkeys(SIZES, 1 / 3)


def test_sampler_is_deterministic_under_its_seed_and_chunking() -> None:
    first = TaskSampler(SIZES, "temperature", 2.0, seed=7)
    chunked = first.draw(5) + first.draw(100) + first.draw(395)
    second = TaskSampler(SIZES, "temperature", 2.0, seed=7)
    assert second.draw(500) == chunked
    second.reset()
    assert second.draw(500) == chunked
    assert TaskSampler(SIZES, "temperature", 2.0, seed=8).draw(500) != chunked


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"strategy": "uniformish"}, ValueError, "sampling must be one of 'proportional', 'temperature', "
         "'round_robin'; got 'uniformish'"),
        ({"strategy": "temperature", "temperature": 0}, ValueError, "temperature must be a number > 0"),
        ({"strategy": "temperature", "temperature": -2.0}, ValueError, "got -2.0"),
        ({"strategy": "temperature", "temperature": float("nan")}, ValueError, "got nan"),
        ({"strategy": "proportional", "temperature": 3.0}, ValueError,
         "temperature=3.0 is only used by sampling='temperature'; got sampling='proportional'"),
        ({"sizes": {}}, ValueError, "needs at least one task; got none"),
        ({"sizes": {"a": 10, "b": 0}}, ValueError, "task 'b' has 0 examples"),
        ({"sizes": {"a": 10, "b": -1}}, ValueError, "task 'b': the number of examples must be an integer >= 1; "
         "got -1"),
        ({"sizes": {"a": 2.5}}, ValueError, "got 2.5"),
        ({"sizes": [10, 20]}, TypeError, "sizes must be a dict"),
    ],
)  # fmt: skip
def test_sampler_refuses_bad_input(kwargs: dict[str, Any], error: type, message: str) -> None:
    arguments = {"sizes": SIZES, **kwargs}
    with pytest.raises(error) as info:
        TaskSampler(**arguments)
    assert message in str(info.value)


def test_multitask_config_validates_and_round_trips() -> None:
    config = MultiTaskConfig(sampling="temperature", temperature=3.0, adapter_per_task=False)
    assert MultiTaskConfig.from_dict(json.loads(config.to_json())) == config
    with pytest.raises(ValueError, match="sampling must be one of"):
        MultiTaskConfig(sampling="random")
    with pytest.raises(ValueError, match="temperature must be a number > 0"):
        MultiTaskConfig(sampling="temperature", temperature=0.0)
    with pytest.raises(TypeError, match="adapter_per_task must be true or false; got 'yes'"):
        MultiTaskConfig(adapter_per_task="yes")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- batches
def marked_features(sizes: dict[str, int]) -> dict[str, list[dict[str, int]]]:
    """Feature ``i`` of task number ``t`` carries ``x = 1000 t + i``: a batch tells which rows it holds."""
    return {name: [{"x": 1000 * t + i} for i in range(size)] for t, (name, size) in enumerate(sizes.items())}


def stack(rows: list[dict[str, int]]) -> dict[str, torch.Tensor]:
    return {"x": torch.tensor([row["x"] for row in rows])}


def make_batches(sizes: dict[str, int], strategy: str = "proportional", batch_size: int = 4) -> MultiTaskBatches:
    sampler = TaskSampler(sizes, strategy, seed=1)
    routes = {name: {"head": name, "adapter_names": name} for name in sizes}
    return MultiTaskBatches(marked_features(sizes), dict.fromkeys(sizes, stack), batch_size, sampler, routes, seed=5)


@pytest.mark.parametrize("strategy", ["proportional", "temperature", "round_robin"])
def test_every_batch_holds_one_task_and_names_its_head_and_adapter(strategy: str) -> None:
    sizes = {"a": 10, "b": 33, "c": 3}
    batches = make_batches(sizes, strategy)
    assert len(batches) == 3 + 9 + 1  # sum of ceil(n_i / 4)
    names = list(sizes)
    for epoch in range(3):
        batches.set_epoch(epoch)
        seen = list(batches)
        assert len(seen) == len(batches)
        for batch in seen:
            task = batch["head"]
            assert batch["adapter_names"] == task
            assert set((batch["x"] // 1000).tolist()) == {names.index(task)}
            assert 1 <= len(batch["x"]) <= 4


def test_a_task_passes_over_all_its_examples_before_reshuffling() -> None:
    sizes = {"a": 7, "b": 5}
    batches = make_batches(sizes, "round_robin", batch_size=3)
    rows: dict[str, list[int]] = {"a": [], "b": []}
    for epoch in range(4):
        for task, indices in batches.plan(epoch):
            rows[task].extend(indices)
    for task, size in sizes.items():
        passes = [rows[task][start : start + size] for start in range(0, len(rows[task]) - size + 1, size)]
        assert len(passes) >= 2
        assert all(sorted(chunk) == list(range(size)) for chunk in passes), (task, rows[task])
        assert len({tuple(chunk) for chunk in passes}) > 1  # reshuffled between passes


def test_batch_stream_is_a_function_of_seed_and_epoch() -> None:
    sizes = {"a": 10, "b": 33}
    sequential = make_batches(sizes)
    plans = [sequential.plan(epoch) for epoch in range(3)]
    assert plans[0] != plans[1]
    resumed = make_batches(sizes)
    assert resumed.plan(2) == plans[2]  # fast-forwarded, as a resumed run needs
    assert resumed.plan(0) == plans[0] and resumed.plan(2) == plans[2]  # any order, any number of times
    unset = make_batches(sizes)  # iterated without set_epoch: consecutive passes are consecutive epochs
    assert [[batch["x"].tolist() for batch in unset] for _ in range(2)] == [
        [stack([{"x": 1000 * list(sizes).index(t) + i} for i in idx])["x"].tolist() for t, idx in plan]
        for plan in plans[:2]
    ]


def test_batches_refuse_mismatched_tasks() -> None:
    sizes = {"a": 4, "b": 4}
    sampler = TaskSampler(sizes)
    with pytest.raises(ValueError, match=r"collators \['a'\] do not match the tasks of the features \['a', 'b'\]"):
        MultiTaskBatches(marked_features(sizes), {"a": stack}, 2, sampler)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1; got 0"):
        MultiTaskBatches(marked_features(sizes), dict.fromkeys(sizes, stack), 0, sampler)
    with pytest.raises(ValueError, match="sampler's task sizes"):
        MultiTaskBatches(marked_features({"a": 4, "b": 5}), dict.fromkeys(sizes, stack), 2, sampler)


# --------------------------------------------------------------------------- toy tasks and the trainer
@pytest.fixture(scope="module")
def base_dir(minilm_tiny_bert: Path) -> Path:
    """A tiny random BERT with the MiniLM tokenizer, saved, so that saved adapters can name their base model."""
    return minilm_tiny_bert


def toy_split(size: int, num_labels: int, seed: int) -> datasets.Dataset:
    """Sentences of three words from the label's group plus neutral words; schema text_a, text_b, label."""
    rng = random.Random(seed)
    rows: dict[str, list[Any]] = {"text_a": [], "text_b": [], "label": []}
    for index in range(size):
        label = index % num_labels
        rows["text_a"].append(" ".join(rng.sample(GROUPS[label], 3)) + rng.choice([" the table", " some green"]))
        rows["text_b"].append("")
        rows["label"].append(label)
    return datasets.Dataset.from_dict(rows)


TRAIN = {"toy_two": (64, 2, 0), "toy_three": (96, 3, 1)}
DEV = {"toy_two": (32, 2, 2), "toy_three": (30, 3, 3)}


def splits(table: dict[str, tuple[int, int, int]]) -> dict[str, datasets.Dataset]:
    return {name: toy_split(*arguments) for name, arguments in table.items()}


def toy_trainer(
    base_dir: Path, output: Path, steps: int = STEPS, overrides: dict[str, Any] | None = None, **kwargs: Any
) -> MultiTaskTrainer:
    values: dict[str, Any] = dict(
        output_dir=str(output), max_steps=steps, batch_size=8, adapter_learning_rate=1e-2, head_learning_rate=2e-2,
        logging_steps=5, eval_steps=EVAL_STEPS, save_total_limit=5, disable_tqdm=True, seed=0,
    )  # fmt: skip
    training = TrainingConfig(**{**values, **(overrides or {})})
    return MultiTaskTrainer(
        [TWO, THREE], ModelConfig(model_name_or_path=str(base_dir), max_seq_length=32),
        AdapterConfig(bottleneck_size=8), training, **kwargs,
    )  # fmt: skip


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def run(base_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One multi-task run on the two toy tasks, adapters per task, temperature sampling; saved afterwards."""
    output = tmp_path_factory.mktemp("multitask")
    trainer = toy_trainer(base_dir, output / "runs", sampling="temperature", temperature=2.0)
    before = snapshot(trainer.model)
    metrics = trainer.train(splits(TRAIN), splits(DEV))
    saved = trainer.save(output / "adapters")
    return {"trainer": trainer, "before": before, "after": snapshot(trainer.model), "metrics": metrics,
            "saved": saved, "output": output}  # fmt: skip


def test_each_task_gets_its_head_and_adapter(run: dict[str, Any]) -> None:
    model = run["trainer"].model
    assert model.adapters.list_adapters() == ["toy_two", "toy_three"]
    assert list(model.heads) == ["toy_two", "toy_three"]
    assert [model.head_config(name).num_labels for name in model.heads] == [2, 3]
    assert run["trainer"].routes() == {
        "toy_two": {"head": "toy_two", "adapter_names": "toy_two"},
        "toy_three": {"head": "toy_three", "adapter_names": "toy_three"},
    }


def test_training_batches_hold_one_task_each(run: dict[str, Any]) -> None:
    trainer = run["trainer"]
    loader = trainer.trainer.get_train_dataloader()
    features = trainer.preprocessor.features(splits(TRAIN))
    assert len(loader) == 8 + 12  # ceil(64 / 8) + ceil(96 / 8)
    vocabulary = {name: {tuple(row["input_ids"]) for row in rows} for name, rows in features.items()}
    tasks = Counter()
    for batch in loader:
        task = batch["head"]
        tasks[task] += 1
        assert batch["adapter_names"] == task
        assert int(batch["labels"].max()) < trainer.model.head_config(task).num_labels
        for ids, mask in zip(batch["input_ids"].tolist(), batch["attention_mask"].tolist()):
            assert tuple(i for i, m in zip(ids, mask) if m) in vocabulary[task]
    assert set(tasks) == {"toy_two", "toy_three"}
    prepared = trainer.trainer._prepare_inputs({"input_ids": torch.ones(1, 2, dtype=torch.long), "head": "toy_two"})
    assert prepared["head"] == "toy_two"  # the Trainer passes the routing strings through untouched


def test_only_adapters_and_heads_change(run: dict[str, Any]) -> None:
    before, after, model = run["before"], run["after"], run["trainer"].model
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    for name in ("toy_two", "toy_three"):  # every adapter and every head trained
        assert any(k.startswith(f"adapters.adapters.{name}.") for k in changed), name
        assert any(k.startswith(f"heads.{name}.") for k in changed), name
    assert all(k.startswith(("adapters.adapters.", "heads.")) for k in changed)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        k for k in before if k.startswith(("adapters.adapters.", "heads."))
    }
    rates = optimizer_rates(run["trainer"].trainer.optimizer)
    assert rates == {"adapter": 1e-2, "head": 2e-2}  # the per-kind learning rates


def test_per_task_losses_are_logged_and_fall(run: dict[str, Any]) -> None:
    history = run["trainer"].trainer.state.log_history
    logged = [entry for entry in history if "loss" in entry]
    assert len(logged) == STEPS // 5
    for task in ("toy_two", "toy_three"):
        losses = [entry[f"loss_{task}"] for entry in logged if f"loss_{task}" in entry]
        assert len(losses) >= 6 and all(np.isfinite(losses))
        assert np.mean(losses[-2:]) < np.mean(losses[:2]) - 0.1, (task, losses)
        assert run["metrics"][f"train_loss_{task}"] > 0


def test_per_task_eval_metrics_and_their_mean_select_the_checkpoint(run: dict[str, Any]) -> None:
    history = run["trainer"].trainer.state.log_history
    evals = [entry for entry in history if "eval_mean_main" in entry]
    # every eval_steps; transformers 5 also evaluates at the last step (40), 4.57 does not
    assert [entry["step"] for entry in evals] in ([15, 30, 40], [15, 30])
    for entry in evals:
        assert {"eval_toy_two_accuracy", "eval_toy_three_accuracy", "eval_toy_three_macro_f1"} <= set(entry)
        assert entry["eval_mean_main"] == pytest.approx(
            (entry["eval_toy_two_accuracy"] + entry["eval_toy_three_accuracy"]) / 2
        )
    state = run["trainer"].trainer.state
    assert state.best_metric == max(entry["eval_mean_main"] for entry in evals)
    metrics = run["metrics"]
    assert metrics["tasks"] == ["toy_two", "toy_three"] and metrics["global_step"] == STEPS
    assert metrics["sampling"] == "temperature" and metrics["temperature"] == 2.0
    assert metrics["sampling_probabilities"] == pytest.approx(
        {"toy_two": 8 / (8 + 96**0.5), "toy_three": 96**0.5 / (8 + 96**0.5)}
    )
    assert metrics["mean_main"] == pytest.approx(state.best_metric)
    assert metrics["toy_two_accuracy"] >= 0.9 and metrics["toy_three_accuracy"] >= 0.9


def test_saved_task_directories_reload_with_identical_logits(run: dict[str, Any]) -> None:
    trainer, saved = run["trainer"], run["saved"]
    assert sorted(p.name for p in (run["output"] / "adapters").iterdir()) == ["run.json", "toy_three", "toy_two"]
    model = trainer.model.eval()
    texts = ["blorp zindle quaff the table", "plonk wibble some green", "snark"]
    batch = trainer.tokenizer(texts, padding=True, return_tensors="pt")
    for task, directory in saved.items():
        assert sorted(p.name for p in directory.iterdir()) == [
            "README.md", "adapter.safetensors", "adapter_config.json", "head.safetensors", "head_config.json",
            "manifest.json",
        ]  # fmt: skip
        info = read_adapter_config(directory)
        assert info["name"] == task and info["metadata"]["task"] == task
        assert f"{task}_accuracy" in info["metadata"]["metrics"]
        with torch.no_grad():
            expected = model(**batch, head=task, adapter_names=task).logits
            torch.manual_seed(123)
            pipeline = FusionPipeline.from_pretrained(directory)
            assert torch.equal(pipeline.model(**batch, head=pipeline.head_for(task)).logits, expected)
        assert pipeline.predict(texts[0], task=task)["label"] in trainer.specs[task].label_names
    fusion = FusionModel.from_adapters(list(saved.values()))  # what train-fusion --adapters loads
    assert fusion.fusion is not None and list(fusion.fusion.adapter_names) == ["toy_two", "toy_three"]


def test_shared_adapter_serves_every_task(base_dir: Path, tmp_path: Path) -> None:
    trainer = toy_trainer(base_dir, tmp_path / "runs", steps=6, sampling="round_robin", adapter_per_task=False)
    assert trainer.model.adapters.list_adapters() == [SHARED_ADAPTER]
    assert {route["adapter_names"] for route in trainer.routes().values()} == {SHARED_ADAPTER}
    before = snapshot(trainer.model)
    metrics = trainer.train(splits(TRAIN), splits(DEV))
    assert metrics["adapter_per_task"] is False and metrics["global_step"] == 6
    after = snapshot(trainer.model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith(f"adapters.adapters.{SHARED_ADAPTER}.") for k in changed)
    assert {k.split(".")[1] for k in changed if k.startswith("heads.")} == {"toy_two", "toy_three"}
    saved = trainer.save(tmp_path / "adapters")
    weights = [load_file(saved[task] / "adapter.safetensors") for task in ("toy_two", "toy_three")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
    model = trainer.model.eval()
    batch = trainer.tokenizer(["blorp snark plonk"], return_tensors="pt")
    for task, directory in saved.items():
        info = read_adapter_config(directory)
        assert info["name"] == task
        assert info["metadata"]["shared_adapter"]["tasks"] == ["toy_two", "toy_three"]
        pipeline = FusionPipeline.from_pretrained(directory)
        with torch.no_grad():
            expected = model(**batch, head=task, adapter_names=SHARED_ADAPTER).logits
            assert torch.equal(pipeline.model(**batch, head=task).logits, expected)


def test_resuming_mid_epoch_reproduces_the_run(run: dict[str, Any], base_dir: Path, tmp_path: Path) -> None:
    original = run["output"] / "runs"
    shutil.copytree(original / "checkpoint-15", tmp_path / "checkpoint-15")
    trainer = toy_trainer(
        base_dir, tmp_path, overrides={"resume_from_checkpoint": str(tmp_path / "checkpoint-15")},
        sampling="temperature", temperature=2.0,
    )  # fmt: skip
    trainer.train(splits(TRAIN), splits(DEV))
    expected = load_file(original / "checkpoint-40" / TRAINABLE_WEIGHTS)
    resumed = load_file(tmp_path / "checkpoint-40" / TRAINABLE_WEIGHTS)
    assert resumed.keys() == expected.keys()
    different = [key for key in expected if not torch.equal(resumed[key], expected[key])]
    assert not different, f"resuming did not reproduce the uninterrupted run: {different}"


def test_tasks_without_logit_metrics_are_tracked_by_dev_loss(
    base_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task type whose ``metrics_fn`` is None (generation) is tracked by dev loss during training and selects
    checkpoints by the mean dev loss when no task has logit metrics; its type's ``evaluate`` scores it at the end."""
    monkeypatch.setattr(MultiTaskPreprocessor, "metrics_fns", lambda self, datasets, features: dict.fromkeys(features))
    trainer = toy_trainer(base_dir, tmp_path, steps=4, overrides={"eval_steps": 2, "eval_batch_size": 8})
    metrics = trainer.train(splits(TRAIN), splits(DEV))
    assert trainer.trainer.args.metric_for_best_model == "eval_mean_loss"
    assert not trainer.trainer.args.greater_is_better
    evals = [entry for entry in trainer.trainer.state.log_history if "eval_mean_loss" in entry]
    assert [entry["step"] for entry in evals] == [2, 4]
    assert all("eval_mean_main" not in entry and "eval_toy_two_accuracy" not in entry for entry in evals)
    for entry in evals:
        assert entry["eval_mean_loss"] == pytest.approx(
            (entry["eval_toy_two_loss"] + entry["eval_toy_three_loss"]) / 2
        )
    assert {"toy_two_accuracy", "toy_three_accuracy", "mean_main"} <= set(metrics)  # scored at the end
    # the dev loss is the mean over examples (30 rows in batches of 8 and 6): one forward over all rows agrees
    features = trainer.preprocessor.features(splits(DEV))["toy_three"]
    collate = trainer.task_types["toy_three"].collator(THREE, trainer.tokenizer)
    with torch.no_grad():
        whole = trainer.model.eval()(**collate(list(features)), head="toy_three", adapter_names="toy_three").loss
    assert trainer._dev_loss("toy_three", features) == pytest.approx(float(whole), rel=1e-5)


def test_casing_dim_goes_to_the_tagging_heads_only(base_dir: Path, tmp_path: Path) -> None:
    """``ModelConfig.casing_dim`` in a mix of tagging and classification tasks: the tagging head reads casing ids,
    the classification head is plain, and batches of both train through the one path."""
    case = TaskSpec("toy_case", "token_classification", ("O", "NAME"), False, ("accuracy",), "accuracy", "toy")
    rng = random.Random(0)
    records = []
    for _ in range(32):
        words = rng.choices(["rook", "pawn", "castle"], k=3)
        names = [rng.random() < 0.5 for _ in words]
        records.append({"tokens": [w.title() if n else w for w, n in zip(words, names)],
                        "tags": ["NAME" if n else "O" for n in names]})  # fmt: skip
    tagging = get_task_type("token_classification")
    training = TrainingConfig(output_dir=str(tmp_path), max_steps=6, batch_size=8, eval_steps=6, disable_tqdm=True,
                              seed=0)  # fmt: skip
    trainer = MultiTaskTrainer(
        [TWO, case], ModelConfig(model_name_or_path=str(base_dir), max_seq_length=16, casing_dim=8),
        AdapterConfig(bottleneck_size=8), training,
    )  # fmt: skip
    assert trainer.model.head_config("toy_case").casing_dim == 8
    assert trainer.model.head_config("toy_two").casing_dim == 0
    data = {"toy_two": toy_split(32, 2, 0), "toy_case": tagging.to_dataset(case, records, None, "toy")}
    casing = trainer.model.heads["toy_case"].casing.weight
    before = casing.detach().clone()
    metrics = trainer.train(data, data)
    dev = data["toy_two"]
    batch = trainer.tokenizer(list(dev["text_a"]), padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = trainer.model.eval()(**batch, head="toy_two", adapter_names="toy_two").logits
    hand = (logits.argmax(-1) == torch.tensor(list(dev["label"]))).float().mean().item()
    assert metrics["toy_two_accuracy"] == pytest.approx(hand, abs=1e-6)  # the reported accuracy is the model's
    assert not torch.equal(casing.detach(), before)  # the casing embedding trains with the tagging head


def test_full_finetuning_trains_the_base_with_a_head_per_task(base_dir: Path, tmp_path: Path) -> None:
    trainer = toy_trainer(base_dir, tmp_path, steps=2, overrides={"full_finetune": True})
    assert trainer.model.adapters.list_adapters() == []
    assert trainer.routes() == {"toy_two": {"head": "toy_two"}, "toy_three": {"head": "toy_three"}}
    before = snapshot(trainer.model)
    trainer.train(splits(TRAIN), splits(DEV))
    after = snapshot(trainer.model)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("base."))
    with pytest.raises(ValueError, match="full_finetune=True.*no adapter to save"):
        trainer.save(tmp_path / "adapters")


def test_preprocessor_builds_features_per_task(base_dir: Path) -> None:
    tokenizer = load_tokenizer(str(base_dir))
    pre = MultiTaskPreprocessor([TWO, THREE], tokenizer, max_length=16)
    features = pre.features(splits(DEV))
    assert {name: len(f) for name, f in features.items()} == {"toy_two": 32, "toy_three": 30}
    assert {"input_ids", "attention_mask", "labels"} <= set(features["toy_three"].column_names)
    with pytest.raises(ValueError, match=r"datasets given for unknown tasks \['nope'\]"):
        pre.datasets("validation", {"nope": toy_split(4, 2, 0)})
    with pytest.raises(ValueError, match="lacks columns"):
        pre.datasets("validation", {"toy_two": datasets.Dataset.from_dict({"text": ["a"]}), "toy_three": None})


@pytest.mark.parametrize(
    ("tasks", "kwargs", "error", "message"),
    [
        ([], {}, ValueError, "needs at least one task; got none"),
        ("sst2", {}, TypeError, "tasks must be a list of task names or TaskSpecs; got 'sst2'"),
        (["sst2", "sentiment"], {}, ValueError, "task 'sst2' is listed twice"),
        (["sst2", 3], {}, TypeError, "each task must be a task name or a TaskSpec; got 3"),
        (["no-such-task"], {}, KeyError, "unknown task 'no-such-task'"),
        (["sst2"], {"sampling": "bogus"}, ValueError, "sampling must be one of"),
        (["sst2"], {"sampling": "temperature", "temperature": -1.0}, ValueError, "got -1.0"),
        (["sst2"], {"adapter_per_task": False, "training_config": TrainingConfig(full_finetune=True)}, ValueError,
         "adapter_per_task=False shares one adapter, but full_finetune=True"),
    ],
)  # fmt: skip
def test_trainer_refuses_bad_input_before_loading_a_model(
    tasks: Any, kwargs: dict[str, Any], error: type, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import adapter_fusion.training.base_trainer as base_trainer

    def no_model(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("input must be validated before any model is loaded")

    monkeypatch.setattr(base_trainer, "load_tokenizer", no_model)
    with pytest.raises(error) as info:
        MultiTaskTrainer(tasks, **kwargs)
    assert message in str(info.value)


# --------------------------------------------------------------------------- CLI
def test_cli_help_comes_from_the_multitask_config(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["train-multitask", "--help"])
    assert info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for flag in ("--tasks", "--sampling", "--temperature", "--adapter-per-task", "--bottleneck-size", "--max-steps"):
        assert flag in out
    assert "'temperature' (p_i ∝ n_i^(1/T))" in out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--sampling", "bogus"], "sampling must be one of 'proportional', 'temperature', 'round_robin'; got 'bogus'"),
        (["--temperature", "2"], "temperature=2.0 is only used by sampling='temperature'"),
        (["--sampling", "temperature", "--temperature", "0"], "temperature must be a number > 0"),
        (["--batch-size", "0"], "batch_size must be > 0; got 0"),
    ],
)
def test_cli_refuses_bad_values_before_loading_a_model(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import adapter_fusion.training.multi_task_trainer as multitask

    def no_model(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("configs must be validated before any model is loaded")

    monkeypatch.setattr(multitask, "MultiTaskTrainer", no_model)
    assert main(["train-multitask", "--tasks", "sst2", "rte", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("adapter-fusion train-multitask: error:") and message in err


def test_cli_needs_tasks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train-multitask"]) == 2
    assert "--tasks NAME" in capsys.readouterr().err


@pytest.mark.realdata
def test_cli_train_multitask_on_sst2_and_rte(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    output, metrics_file = tmp_path / "mt", tmp_path / "metrics.json"
    code = main([
        "train-multitask", "--tasks", "sst2", "rte", "--sampling", "temperature", "--temperature", "2",
        "--data-dir", str(data_dir), "--output", str(output), "--output-dir", str(tmp_path / "runs"),
        "--max-train-examples", "64", "--max-eval-examples", "64", "--max-steps", "10", "--batch-size", "16",
        "--logging-steps", "2", "--disable-tqdm", "true", "--seed", "0", "--metrics-file", str(metrics_file),
    ])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "multi-task training of ['sst2', 'rte'] (temperature sampling): 2 adapter(s)" in out
    metrics = json.loads(metrics_file.read_text())
    assert metrics["global_step"] == 10 and metrics["train_examples"] == {"sst2": 64, "rte": 64}
    assert 0.0 <= metrics["sst2_accuracy"] <= 1.0 and 0.0 <= metrics["rte_accuracy"] <= 1.0
    assert metrics["mean_main"] == pytest.approx((metrics["sst2_accuracy"] + metrics["rte_accuracy"]) / 2)
    assert np.isfinite(metrics["train_loss_sst2"]) and np.isfinite(metrics["train_loss_rte"])
    pipeline = FusionPipeline.from_pretrained(output / "sst2")
    assert pipeline.predict("a gorgeous, witty film", task="sst2")["label"] in ("negative", "positive")
    result = FusionPipeline.from_pretrained(output / "rte").predict("A man sleeps.", text_pairs="A man rests.")
    assert result["label"] in ("entailment", "not_entailment")
