"""Multi-task fusion (one fusion, a head per task, a router), running a subset of the fused adapters, routing among
single adapters, and the bad inputs of each: toy tasks on a tiny random BERT with the bundled MiniLM tokenizer."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import datasets
import pytest
import torch

from adapter_fusion.adapters import AdapterConfig
from adapter_fusion.fusion import FUSION_METHODS, FusionConfig
from adapter_fusion.inference import FusionPipeline
from adapter_fusion.models.fusion_model import FusionModel
from adapter_fusion.tasks import TaskSpec
from adapter_fusion.tasks.mixed import split_by_task
from adapter_fusion.tasks.sentence.type import SequenceClassificationType
from adapter_fusion.training.config import ModelConfig, TrainingConfig
from adapter_fusion.training.fusion_trainer import FusionTrainer
from adapter_fusion.training.multi_task_trainer import MultiTaskTrainer
from adapter_fusion.training.routing import train_adapter_router
from conftest import randomise_

# each toy task has its own marker words (so inputs tell their task) and one word group per class
MARKERS = {"toy_two": ("alpha", "beta"), "toy_three": ("omega", "sigma")}
GROUPS = {
    "toy_two": (("blorp", "zindle", "quaff"), ("snark", "grollo", "vexnit")),
    "toy_three": (("plonk", "wibble", "fizzgig"), ("mimsy", "drubble", "sproing"), ("gimble", "frabjous", "tove")),
}
TWO = TaskSpec("toy_two", "classification", ("neg", "pos"), False, ("accuracy",), "accuracy", "two toy classes")
THREE = TaskSpec("toy_three", "classification", ("x", "y", "z"), False, ("accuracy",), "accuracy", "three classes")
SPECS = {"toy_two": TWO, "toy_three": THREE}


def rows(task: str, size: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    labels = len(SPECS[task].label_names)
    words = [rng.sample(GROUPS[task][i % labels], 2) + [rng.choice(MARKERS[task])] for i in range(size)]
    return [{"text": " ".join(w), "labels": i % labels, "task": task} for i, w in enumerate(words)]


def mixed(size: int, seed: int) -> datasets.Dataset:
    return datasets.Dataset.from_list(rows("toy_two", size, seed) + rows("toy_three", size, seed + 1))


@pytest.fixture(scope="module")
def base_dir(minilm_tiny_bert: Path) -> Path:
    return minilm_tiny_bert


def training(output: Path, steps: int, **overrides: Any) -> TrainingConfig:
    values: dict[str, Any] = dict(output_dir=str(output), max_steps=steps, batch_size=8, adapter_learning_rate=1e-2,
                                  fusion_learning_rate=5e-3, head_learning_rate=2e-2, logging_steps=5,
                                  disable_tqdm=True, seed=0, save_total_limit=1)  # fmt: skip
    return TrainingConfig(**{**values, **overrides})


@pytest.fixture(scope="module")
def adapters(base_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two toy adapters (+ heads), trained briefly by train-multitask and saved as standard adapter directories."""
    output = tmp_path_factory.mktemp("adapters")
    data = split_by_task(mixed(48, 0), SPECS)
    trainer = MultiTaskTrainer([TWO, THREE], ModelConfig(model_name_or_path=str(base_dir), max_seq_length=16),
                               AdapterConfig(bottleneck_size=8), training(output / "run", 12))  # fmt: skip
    trainer.train(data, data)
    return trainer.save(output / "saved")


@pytest.fixture(scope="module")
def fused(base_dir: Path, adapters: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The documented multi-task fusion: tasks from the data's ``task`` column, saved when training ends."""
    output = tmp_path_factory.mktemp("fusion")
    trainer = FusionTrainer(
        [TWO, THREE],  # the toy tasks are not registered: named here, as registered ones come from the data
        FusionConfig(adapter_paths=[str(p) for p in adapters.values()]),
        model_config=ModelConfig(model_name_or_path=str(base_dir), max_seq_length=16),
        training_config=training(output / "run", 60, head_learning_rate=5e-2,
                                 fusion_checkpoint_dir=str(output / "fusion")),
    )  # fmt: skip
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    metrics = trainer.train_fusion(mixed(48, 10), mixed(24, 20))
    return {"trainer": trainer, "before": before, "metrics": metrics, "directory": output / "fusion"}


def test_one_fusion_serves_every_task(fused: dict[str, Any]) -> None:
    trainer, directory = fused["trainer"], fused["directory"]
    model = trainer.model
    assert list(model.heads) == ["toy_two", "toy_three", "router"]
    assert model.head_config("router").label_names == ("toy_two", "toy_three")
    after = model.state_dict()
    changed = {k for k, v in fused["before"].items() if not torch.equal(v, after[k])}
    assert any(k.startswith("adapters.composition.") for k in changed)  # the fusion trained
    assert all(k.startswith(("adapters.composition.", "heads.")) for k in changed)  # adapters and base did not
    assert {n.split(".")[1] for n, p in model.named_parameters() if p.requires_grad and n.startswith("heads.")} == {
        "toy_two", "toy_three", "router"
    }
    metrics = fused["metrics"]
    assert metrics["toy_two_accuracy"] >= 0.9 and metrics["toy_three_accuracy"] >= 0.9
    assert metrics["router_accuracy"] >= 0.8
    pipeline = FusionPipeline.from_pretrained(directory)
    assert sorted(pipeline.tasks) == ["toy_three", "toy_two"]
    texts = ["blorp zindle alpha", "plonk wibble omega"]
    batch = trainer.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        for task in ("toy_two", "toy_three"):
            expected = model.eval()(**batch, head=task).logits
            assert torch.equal(pipeline.model(**batch, head=task).logits, expected)
            assert pipeline.predict(texts[0], task=task)["label"] in SPECS[task].label_names


def test_predict_without_task_routes_each_input(fused: dict[str, Any]) -> None:
    pipeline = FusionPipeline.from_pretrained(fused["directory"])
    stream = rows("toy_two", 12, 99) + rows("toy_three", 12, 98)
    random.Random(0).shuffle(stream)
    routed = pipeline.predict([row["text"] for row in stream])
    assert sum(r["task"] == row["task"] for r, row in zip(routed, stream)) / len(stream) >= 0.8
    for result, row in zip(routed, stream):  # a routed prediction is the chosen head's prediction
        alone = pipeline.predict(row["text"], task=result["task"])  # (batched vs alone: float noise only)
        assert result["label"] == alone["label"] and result["score"] == pytest.approx(alone["score"], abs=1e-5)
    single = pipeline.predict("mimsy sproing omega")
    assert single["task"] in ("toy_two", "toy_three") and 0.0 <= single["task_score"] <= 1.0


@pytest.mark.parametrize("method", [m for m in FUSION_METHODS.names() if m != "sparse"])  # sparse picks its own k
def test_a_subset_of_the_fused_adapters_equals_a_fusion_of_that_subset(base_dir: Path, method: str) -> None:
    def model_over(names: tuple[str, ...]) -> FusionModel:
        model = FusionModel.from_pretrained(str(base_dir)).eval()
        for seed, name in enumerate(("a", "b", "c")):
            model.add_adapter(name, AdapterConfig(bottleneck_size=4), activate=False)
            randomise_(model.adapters.adapters[name], seed=seed + 1, std=0.3)
        model.add_fusion(FusionConfig(adapter_names=names, fusion_method=method))
        model.add_classification_head("t", 2, dropout=0.0)
        return model

    full, part = model_over(("a", "b", "c")), model_over(("a", "c"))
    randomise_(full.fusion, seed=5, std=0.3)
    randomise_(full.heads, seed=6)
    part.heads.load_state_dict(full.heads.state_dict())
    keep = torch.tensor([0, 2])
    sliced = {k: v if v.shape == part.fusion.state_dict()[k].shape else v.index_select(0, keep)
              for k, v in full.fusion.state_dict().items()}  # fmt: skip
    part.fusion.load_state_dict(sliced)
    batch = {"input_ids": torch.randint(5, 300, (2, 6)), "attention_mask": torch.ones(2, 6, dtype=torch.long)}
    with torch.no_grad():
        out = full(**batch, adapter_names=["a", "c"], return_fusion_weights=True)
        torch.testing.assert_close(out.logits, part(**batch).logits)
        assert next(iter(out.fusion_weights.values())).shape[-1] == 2
        assert not torch.equal(full(**batch).logits, out.logits)  # the whole fusion differs
        torch.testing.assert_close(full(**batch, adapter_names=["c", "b", "a"]).logits, full(**batch).logits)
    for bad in (["a", "zzz"], [], ["a", "a"]):
        with pytest.raises(ValueError, match=r"must be distinct adapters of fusion 'fusion': \['a', 'b', 'c'\]"):
            full(**batch, adapter_names=bad)


def test_routing_picks_a_task_that_fits_the_input_shape(
    fused: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The router reads a pair's two sentences joined, so its first choice can be a single-sentence task (or, for a
    single sentence, a pair task): the input then goes to the best-scoring task that can take it, not to an error
    (a mixed stream of SST-2 and MNLI rows used to stop at the first misrouted pair)."""
    pipeline = FusionPipeline.from_pretrained(fused["directory"])
    monkeypatch.setattr(SequenceClassificationType, "takes_pairs", lambda self, config: config.task == "toy_three")
    prefer_two = {"task": "toy_two", "score": 0.9, "scores": {"toy_two": 0.9, "toy_three": 0.1}}
    prefer_three = {"task": "toy_three", "score": 0.8, "scores": {"toy_two": 0.2, "toy_three": 0.8}}
    monkeypatch.setattr(pipeline, "route", lambda batch, pairs, size: [prefer_two, prefer_three, prefer_two])
    routed = pipeline.predict(["blorp alpha", "plonk wibble", "mimsy omega"], text_pairs=["", "", "drubble tove"])
    assert [r["task"] for r in routed] == ["toy_two", "toy_two", "toy_three"]
    assert [r["task_score"] for r in routed] == [0.9, 0.2, 0.1]
    assert routed[2]["label"] == pipeline.predict("mimsy omega", task="toy_three", text_pairs="drubble tove")["label"]
    monkeypatch.setattr(SequenceClassificationType, "takes_pairs", lambda self, config: False)
    with pytest.raises(ValueError, match=r"an input with a second sentence fits none of this pipeline's tasks "
                                         r"\['toy_three', 'toy_two'\]"):  # fmt: skip
        pipeline.predict(["blorp alpha"], text_pairs=["zindle"])


def test_bad_input_gets_one_line_errors(fused: dict[str, Any], adapters: dict[str, Path], base_dir: Path) -> None:
    pipeline = FusionPipeline.from_pretrained(fused["directory"])
    with pytest.raises(KeyError, match=r"no head for task 'sst5'; this pipeline has tasks \['toy_three', 'toy_two'\]"):
        pipeline.predict("a text", task="sst5")
    with pytest.raises(ValueError, match=r"rows of task 'mrpc', but this fusion has heads for tasks"):
        split_by_task(datasets.Dataset.from_list([*rows("toy_two", 2, 0), {"text": "a", "labels": 0, "task": "mrpc"}]),
                      SPECS)  # fmt: skip
    out_of_range = datasets.Dataset.from_list([{"text": "blorp alpha", "labels": 2, "task": "toy_two"}])
    with pytest.raises(ValueError, match=r"task 'toy_two': label 2 in .* is out of range; allowed: class ids 0\.\.1"):
        split_by_task(out_of_range, SPECS)
    single = FusionTrainer(TWO, FusionConfig(adapter_paths=[str(p) for p in adapters.values()]),
                           ModelConfig(model_name_or_path=str(base_dir), max_seq_length=16), training(base_dir, 1))
    with pytest.raises(ValueError, match=r"rows of task 'toy_three', but this fusion has heads for tasks \['toy_two"):
        single.train_fusion(mixed(4, 0), mixed(4, 0))
    plain = datasets.Dataset.from_list([{"text_a": "blorp alpha", "label": 5}])
    with pytest.raises(ValueError, match="label 5 in the train dataset is out of range"):
        single.train_fusion(plain, plain)


def test_router_among_single_adapters(base_dir: Path, adapters: dict[str, Path], tmp_path: Path) -> None:
    data = split_by_task(mixed(32, 40), SPECS)
    held_out = split_by_task(mixed(12, 50), SPECS)
    metrics = train_adapter_router(
        list(adapters.values()), tmp_path / "router", data, held_out,
        ModelConfig(model_name_or_path=str(base_dir), max_seq_length=16), AdapterConfig(bottleneck_size=8),
        training(tmp_path / "run", 30),
    )  # fmt: skip
    assert metrics["accuracy"] >= 0.9
    pipeline = FusionPipeline.from_adapters(list(adapters.values()), router=tmp_path / "router")
    stream = rows("toy_two", 6, 7) + rows("toy_three", 6, 8)
    routed = pipeline.predict([row["text"] for row in stream])
    assert sum(r["task"] == row["task"] for r, row in zip(routed, stream)) >= 11
    alone = FusionPipeline.from_pretrained(adapters["toy_three"])
    assert pipeline.predict(stream[0]["text"], task="toy_three") == alone.predict(stream[0]["text"], task="toy_three")
    with pytest.raises(ValueError, match="router .* chooses among"):
        FusionPipeline.from_adapters([adapters["toy_two"]], router=tmp_path / "router")


@pytest.mark.realdata
def test_multi_task_fusion_example_runs(data_dir: Path, tmp_path: Path) -> None:
    """examples/multi_task_fusion.py end to end on the real data, at a smoke budget."""
    import os
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "examples" / "multi_task_fusion.py"
    env = {**os.environ, "ADAPTER_FUSION_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(script), "--steps", "4", "--examples", "32"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "3. tasks: ['ag_news', 'mnli', 'sst2']" in done.stdout
    assert done.stdout.count("routed '") == 3 and "P(positive): all adapters" in done.stdout
    assert (tmp_path / "outputs" / "multi_task_fusion" / "fusion" / "fusion_config.json").is_file()
