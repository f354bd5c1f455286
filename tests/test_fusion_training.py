"""FusionModel on the training path: sequential vs joint training, the regulariser and temperature schedule,
and saving / reloading a whole fusion setup (every registered method) with identical logits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import pytest
import torch
import transformers

from adapter_fusion.adapters import AdapterConfig
from adapter_fusion.fusion import FUSION_METHODS, FusionConfig
from adapter_fusion.fusion.saving import FUSION_CONFIG
from adapter_fusion.models import save_adapter
from adapter_fusion.models.fusion_model import FusionModel, load_fusion
from adapter_fusion.training.config import TrainingConfig
from adapter_fusion.training.fusion_setup import TemperatureScheduleCallback, init_head_from_source
from adapter_fusion.training.trainer import ModularTrainer, learning_rates, parameter_kind, training_arguments
from conftest import build_tiny_model, make_batch, optimizer_rates, randomise_

ADAPTERS = ("a", "b")
ADAPTER_FILES = ("adapter.safetensors", "adapter_config.json", "manifest.json")
METHODS = FUSION_METHODS.names()


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT saved to disk, so a fusion directory can name its base model and reload it."""
    directory = tmp_path_factory.mktemp("tiny_bert")
    build_tiny_model("bert", seed=0).save_pretrained(directory)
    return directory


def fusion_model(base_dir: Path, method: str, **config: Any) -> FusionModel:
    transformers.set_seed(0)
    model = FusionModel.from_pretrained(str(base_dir)).eval()
    for index, name in enumerate(ADAPTERS):
        model.add_adapter(name, AdapterConfig(bottleneck_size=4), activate=False)
        with torch.no_grad():
            randomise_(model.adapters.adapters[name], seed=index + 1, std=0.3)
    model.add_fusion(FusionConfig(adapter_names=ADAPTERS, fusion_method=method, **config))
    model.add_classification_head("target", num_labels=3, label_names=("x", "y", "z"), pooling="mean", dropout=0.0)
    return model


def toy_dataset() -> datasets.Dataset:
    batch = make_batch(batch=8, length=6, seed=3)
    rows = [
        {"input_ids": ids.tolist(), "attention_mask": mask.tolist(), "labels": int(ids[0]) % 3}
        for ids, mask in zip(batch["input_ids"], batch["attention_mask"])
    ]
    return datasets.Dataset.from_list(rows * 4)


class _Collator:
    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return {key: torch.tensor([f[key] for f in features]) for key in features[0]}


def run_steps(model: FusionModel, tmp_path: Path, steps: int = 4, **config: Any) -> ModularTrainer:
    training = TrainingConfig(
        output_dir=str(tmp_path / "run"),
        max_steps=steps,
        batch_size=8,
        adapter_learning_rate=1e-3,
        fusion_learning_rate=5e-3,
        head_learning_rate=1e-2,
        logging_steps=1,
        disable_tqdm=True,
        load_best_model_at_end=False,
        group_by_length=False,
        **config,
    )
    trainer = ModularTrainer(
        model=model.train(),
        args=training_arguments(training, None),
        train_dataset=toy_dataset(),
        data_collator=_Collator(),
        learning_rates=learning_rates(training),
    )
    trainer.train()
    return trainer


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed_kinds(model: FusionModel, before: dict[str, torch.Tensor]) -> set[str]:
    kinds = parameter_kind(model)
    after = model.state_dict()
    return {kinds[name] for name in kinds if not torch.equal(before[name], after[name])}


@pytest.mark.parametrize("method", METHODS)
def test_sequential_training_changes_only_fusion_and_head(base_dir: Path, tmp_path: Path, method: str) -> None:
    model = fusion_model(base_dir, method)
    model.train_fusion("target")
    before = snapshot(model)
    run_steps(model, tmp_path)
    assert changed_kinds(model, before) == {"head"} | fusion_kinds(model)


@pytest.mark.parametrize("method", METHODS)
def test_joint_training_trains_adapters_with_their_own_learning_rate(
    base_dir: Path, tmp_path: Path, method: str
) -> None:
    model = fusion_model(base_dir, method, freeze_adapters_during_fusion=False)
    model.train_fusion("target")
    before = snapshot(model)
    trainer = run_steps(model, tmp_path)
    kinds = changed_kinds(model, before)
    assert "adapter" in kinds and "head" in kinds and "base" not in kinds
    rates = optimizer_rates(trainer.optimizer)
    fusion_rates = {"fusion": 5e-3, "fusion_weights": 0.5}  # run_steps: fusion 5e-3; mixing weights 100 x that
    expected = {"adapter": 1e-3, "head": 1e-2, **{kind: fusion_rates[kind] for kind in fusion_kinds(model)}}
    assert rates == expected


def test_weighted_mixing_weights_train_at_their_own_rate_and_leave_uniform(base_dir: Path, tmp_path: Path) -> None:
    """At the fusion's own rate (Adam: about one learning rate per step) four steps leave the weights uniform to
    within 1e-2; at the default, 100 x that, they move (the study's full-data RTE runs ended with every weight between
    0.196 and 0.206, uniform 0.2, after 234 steps at 5e-4)."""
    moved = {}
    for rate in (5e-3, None):
        model = fusion_model(base_dir, "weighted")
        model.train_fusion("target")
        trainer = run_steps(model, tmp_path / str(rate), fusion_weight_learning_rate=rate)
        assert optimizer_rates(trainer.optimizer)["fusion_weights"] == (rate or 0.5)
        weights = torch.cat([layer.mixing_weights() for layer in model.fusion.layers.values()])
        moved[rate] = (weights - 0.5).abs().max().item()
    assert moved[5e-3] < 1e-2 < moved[None]


def fusion_kinds(model: FusionModel) -> set[str]:
    """The parameter kinds of the fusion's trainable weights (none for a method with nothing to learn)."""
    kinds = parameter_kind(model)
    fusion = {id(p) for p in model.get_fusion_parameters() if p.requires_grad}
    return {kinds[name] for name, p in model.named_parameters() if id(p) in fusion}


def test_value_regulariser_enters_the_training_loss(base_dir: Path, tmp_path: Path) -> None:
    model = fusion_model(base_dir, "attention", value_regularization=0.5)
    model.train_fusion("target")
    with torch.no_grad():
        for layer in model.fusion.fusion_layers().values():
            layer.value.weight.add_(0.1)
    penalty = model.regularization_loss()
    assert penalty is not None and penalty.item() > 0
    trainer = run_steps(model, tmp_path, steps=1)
    inputs = _Collator()([toy_dataset()[i] for i in range(8)])
    model.train()
    torch.manual_seed(0)
    with_penalty = trainer.compute_loss(model, dict(inputs)).item()
    torch.manual_seed(0)
    plain = model(**inputs).loss.item()
    torch.testing.assert_close(with_penalty, plain + model.regularization_loss().item(), rtol=1e-5, atol=1e-6)
    model.eval()
    assert trainer.compute_loss(model, dict(inputs)).item() == pytest.approx(model(**inputs).loss.item())


def test_temperature_schedule_is_applied_by_the_trainer_not_the_forward(base_dir: Path) -> None:
    config = FusionConfig(adapter_names=ADAPTERS, temperature=5.0, temperature_decay=1.0, temperature_min=1.0)
    model = fusion_model(base_dir, "attention", temperature=5.0, temperature_decay=1.0, temperature_min=1.0)
    temperatures = lambda: {layer.temperature for layer in model.fusion.fusion_layers().values()}  # noqa: E731
    batch = make_batch(batch=2, length=5)
    model.train()
    model(**batch)
    model(**batch)
    assert temperatures() == {5.0}  # forward never changes it
    callback = TemperatureScheduleCallback(model, config)
    for step, expected in [(0, 5.0), (2, 3.0), (10, 1.0)]:
        callback.on_step_begin(None, type("S", (), {"global_step": step})(), None)
        assert temperatures() == {expected}


@pytest.mark.parametrize("method", METHODS)
def test_save_and_reload_gives_identical_logits(base_dir: Path, tmp_path: Path, method: str) -> None:
    model = fusion_model(base_dir, method, temperature=2.0)
    with torch.no_grad():
        randomise_(model.fusion, seed=7, std=0.2)
        randomise_(model.heads["target"], seed=8, std=0.2)
    batch = make_batch(batch=3, length=7)
    with torch.no_grad():
        expected = model(**batch, return_fusion_weights=True)
    model.save_fusion(tmp_path / "fusion")
    files = sorted(str(p.relative_to(tmp_path / "fusion")) for p in (tmp_path / "fusion").rglob("*") if p.is_file())
    assert files == sorted(
        [FUSION_CONFIG, "fusion.safetensors", "heads/target/head.safetensors", "heads/target/head_config.json"]
        + ["manifest.json", "README.md"]
        + [f"adapters/{n}/{f}" for n in ADAPTERS for f in ADAPTER_FILES]
    )
    torch.manual_seed(1234)  # another seed: nothing may depend on fresh initialisation
    reloaded = load_fusion(tmp_path / "fusion")
    with torch.no_grad():
        actual = reloaded(**batch, return_fusion_weights=True)
    assert torch.equal(actual.logits, expected.logits)
    assert actual.fusion_weights.keys() == expected.fusion_weights.keys()
    for key, weights in expected.fusion_weights.items():
        assert torch.equal(actual.fusion_weights[key], weights)
        if model.fusion.fusion_layers()[key].normalized:
            torch.testing.assert_close(weights.sum(-1), torch.ones_like(weights.sum(-1)))
    assert reloaded.fusion.adapter_names == ADAPTERS


@pytest.mark.parametrize("method", METHODS)
def test_reload_restores_the_annealed_temperature(base_dir: Path, tmp_path: Path, method: str) -> None:
    """A fusion saved mid-schedule reloads at the temperature it had, not at its config's starting one."""
    config = dict(temperature=5.0, temperature_decay=1.0, temperature_min=1.0)
    model = fusion_model(base_dir, method, **config)
    with torch.no_grad():
        randomise_(model.fusion, seed=7, std=0.5)
        randomise_(model.heads["target"], seed=8, std=0.2)
    callback = TemperatureScheduleCallback(model, FusionConfig(adapter_names=ADAPTERS, **config))
    callback.on_step_begin(None, type("S", (), {"global_step": 3})(), None)  # 5 - 3 = 2
    assert {layer.temperature for layer in model.fusion.fusion_layers().values()} == {2.0}
    batch = make_batch(batch=3, length=7)
    with torch.no_grad():
        annealed = model(**batch).logits
        model.fusion.set_temperature(5.0)
        at_start = model(**batch).logits
        model.fusion.set_temperature(2.0)
    assert not torch.allclose(annealed, at_start)  # the temperature changes the outputs here
    model.save_fusion(tmp_path / "fusion")
    reloaded = load_fusion(tmp_path / "fusion")
    assert {layer.temperature for layer in reloaded.fusion.fusion_layers().values()} == {2.0}
    with torch.no_grad():
        assert torch.equal(reloaded(**batch).logits, annealed)


def test_reload_refuses_a_changed_file(base_dir: Path, tmp_path: Path) -> None:
    model = fusion_model(base_dir, "attention")
    model.save_fusion(tmp_path / "fusion")
    weights = tmp_path / "fusion" / "adapters" / "a" / "adapter.safetensors"
    original = weights.read_bytes()
    weights.write_bytes(original[:-4] + b"\0\0\0\0")
    with pytest.raises(ValueError, match="adapter.safetensors changed after the fusion was saved"):
        load_fusion(tmp_path / "fusion")
    weights.write_bytes(original)
    load_fusion(tmp_path / "fusion")  # intact again
    (tmp_path / "fusion" / "fusion.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="fusion.safetensors"):
        load_fusion(tmp_path / "fusion")
    with pytest.raises(FileNotFoundError, match="no fusion_config.json"):
        load_fusion(tmp_path)


def test_forward_takes_fused_adapter_names_and_rejects_others(base_dir: Path) -> None:
    model = fusion_model(base_dir, "weighted")
    batch = make_batch(batch=2, length=5)
    model(**batch, adapter_names=["b", "a"])  # the fused set, any order
    model(**batch, adapter_names=["a"])  # a subset of the fused set runs too
    with pytest.raises(ValueError, match=r"adapter_names \['zz'\] must be distinct adapters of fusion"):
        model(**batch, adapter_names=["zz"])


def test_fusion_config_in_saved_directory_names_adapters_in_order(base_dir: Path, tmp_path: Path) -> None:
    model = fusion_model(base_dir, "gating")
    model.save_fusion(tmp_path / "f")
    info = json.loads((tmp_path / "f" / FUSION_CONFIG).read_text())
    assert info["adapter_names"] == list(ADAPTERS) and info["fusion"]["fusion_method"] == "gating"
    assert info["fusion"]["adapter_paths"] == []


def test_from_adapters_loads_saved_adapters(base_dir: Path, tmp_path: Path) -> None:
    source = fusion_model(base_dir, "attention")
    paths = []
    for name in ADAPTERS:
        save_adapter(source, name, tmp_path / name)
        paths.append(str(tmp_path / name))
    model = FusionModel.from_adapters(paths, FusionConfig(fusion_method="weighted"))
    assert model.fusion.adapter_names == ADAPTERS and model.fusion.config.fusion_method == "weighted"
    for name in ADAPTERS:
        for key, value in source.adapters.adapter_state_dict(name).items():
            assert torch.equal(model.adapters.adapter_state_dict(name)[key], value)
    with pytest.raises(ValueError, match="at least one adapter"):
        FusionModel.from_adapters([])


def test_head_starts_from_another_tasks_head_by_label_name(base_dir: Path, tmp_path: Path) -> None:
    source = fusion_model(base_dir, "attention")  # head "target": labels x, y, z
    with torch.no_grad():
        randomise_(source.heads["target"], seed=5, std=0.3)
    save_adapter(source, "a", tmp_path / "a", head="target")
    saved = source.heads["target"].state_dict()
    model = fusion_model(base_dir, "attention")
    model.add_classification_head("two", num_labels=2, label_names=("y", "rest"), pooling="mean", dropout=0.0)
    used = init_head_from_source(model, "two", tmp_path / "a", {"y": ["y"], "rest": ["x", "z"]})
    assert used == {"y": ("y",), "rest": ("x", "z")}
    head = model.heads["two"].state_dict()
    assert torch.equal(head["dense.weight"], saved["dense.weight"])
    assert torch.equal(head["out.weight"][0], saved["out.weight"][1])  # y <- y
    torch.testing.assert_close(head["out.weight"][1], (saved["out.weight"][0] + saved["out.weight"][2]) / 2)
    torch.testing.assert_close(head["out.bias"][1], (saved["out.bias"][0] + saved["out.bias"][2]) / 2)
    init_head_from_source(model, "target", tmp_path / "a")  # same names: the saved head itself
    for key, value in saved.items():
        assert torch.equal(model.heads["target"].state_dict()[key], value)
    with pytest.raises(ValueError, match=r"label map .*unknown: \['w'\]"):
        init_head_from_source(model, "two", tmp_path / "a", {"y": ["w"], "rest": ["x"]})
    with pytest.raises(ValueError, match="one or more of the source's labels"):  # a target label left without rows
        init_head_from_source(model, "two", tmp_path / "a")
    with pytest.raises(ValueError, match="holds no saved head"):
        save_adapter(source, "b", tmp_path / "b")
        init_head_from_source(model, "two", tmp_path / "b")


def test_cli_train_fusion_rejects_bad_input(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    from adapter_fusion.cli import main

    assert main(["train-fusion", "--task", "rte", "--adapters", str(tmp_path), "--method", "mean"]) == 2
    assert "'mean'" in capsys.readouterr().err
    assert main(["train-fusion", "--task", "rte", "--adapters", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["train-fusion", "--task", "nope", "--adapters", str(tmp_path)]) == 2
    assert "'nope'" in capsys.readouterr().err


def test_fusion_head_starts_from_a_source_head_from_python_and_the_cli(
    tiny_cli_env: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """An RTE fusion whose head starts from an SST-2 adapter's head (labels mapped), from ``FusionTrainer`` and
    ``train-fusion --head-from``; a label map without its source, or one written wrong, is refused before loading."""
    from adapter_fusion.cli import main
    from adapter_fusion.io import load_tensors
    from adapter_fusion.training.config import ModelConfig
    from adapter_fusion.training.fusion_trainer import FusionTrainer

    common = ["--model", str(tiny_cli_env["model"]), "--data-dir", str(tiny_cli_env["data"]), "--max-seq-length",
              "32", "--disable-tqdm", "true", "--batch-size", "8"]  # fmt: skip
    sst2 = tmp_path / "sst2"
    assert main(["train-adapter", "--task", "sst2", "--bottleneck-size", "4", "--output", str(sst2), "--output-dir",
                 str(tmp_path / "sst2.runs"), "--max-steps", "1", *common]) == 0  # fmt: skip
    saved = load_tensors(sst2 / "head.safetensors")  # sst2 labels: negative, positive
    trainer = FusionTrainer(
        "rte", model_config=ModelConfig(model_name_or_path=str(tiny_cli_env["model"]), max_seq_length=32),
        training_config=TrainingConfig(output_dir=str(tmp_path / "f.runs")), data_dir=tiny_cli_env["data"],
        head_from=sst2, head_label_map={"entailment": ["positive"], "not_entailment": ["negative"]},
    )  # fmt: skip
    model = trainer.setup_model([sst2])
    head = model.heads["rte"].state_dict()  # rte labels: entailment, not_entailment
    assert trainer.head_init_from == str(sst2) and torch.equal(head["dense.weight"], saved["dense.weight"])
    assert torch.equal(head["out.weight"], saved["out.weight"].flip(0))
    capsys.readouterr()
    fusion = ["train-fusion", "--task", "rte", "--adapters", str(sst2), "--output-dir", str(tmp_path / "f2.runs"),
              "--max-steps", "1", *common]  # fmt: skip
    mapped = ["--head-from", str(sst2), "--head-label-map", "entailment=positive", "not_entailment=negative"]
    assert main([*fusion, "--output", str(tmp_path / "fusion"), *mapped]) == 0
    assert f"the rte head starts from the head of {sst2}" in capsys.readouterr().out
    for argv, message in [
        (["--head-label-map", "entailment=positive"], "--head-label-map needs --head-from"),
        (["--head-from", str(sst2), "--head-label-map", "entailment"], "item 'entailment': write TARGET_LABEL="),
        (["--head-from", str(sst2)], "label map {'entailment': ('entailment',), 'not_entailment': ('not_entailm"),
    ]:
        assert main([*fusion, "--output", str(tmp_path / "refused"), *argv]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "refused").exists()
