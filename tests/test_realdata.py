"""Real model (bundled all-MiniLM-L6-v2) and real data (../shared/data): a CLI smoke run whose loss falls,
then evaluate / predict on the saved adapter, and save/reload equality on the real model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from adapter_fusion.cli import main
from adapter_fusion.inference import FusionPipeline

pytestmark = pytest.mark.realdata


def test_cli_train_evaluate_predict_on_sst2(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    adapter_dir = tmp_path / "sst2"
    runs = tmp_path / "runs"
    code = main([
        "train-adapter", "--task", "sst2", "--data-dir", str(data_dir), "--output", str(adapter_dir),
        "--output-dir", str(runs), "--max-train-examples", "640", "--max-eval-examples", "128",
        "--num-train-epochs", "1", "--logging-steps", "2", "--disable-tqdm", "true", "--seed", "0",
    ])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "0.498% of the base model's 22,713,216" in out  # the parameter count is printed
    state = json.loads(next(runs.glob("checkpoint-*/trainer_state.json")).read_text())
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert len(losses) >= 8 and all(map(torch.isfinite, torch.tensor(losses)))
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3  # the loss falls
    assert sorted(p.name for p in adapter_dir.iterdir()) == [
        "README.md", "adapter.safetensors", "adapter_config.json", "head.safetensors", "head_config.json",
        "manifest.json",
    ]

    assert main(["evaluate", "--adapter", str(adapter_dir), "--data-dir", str(data_dir), "--max-examples", "64"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["task"] == "sst2" and metrics["examples"] == 64 and 0.0 <= metrics["accuracy"] <= 1.0

    # transfer: the SST-2 head scores MR (same head type and labels); RTE's labels differ, so it is refused
    assert main(["evaluate", "--adapter", str(adapter_dir), "--head", "sst2", "--task", "mr", "--data-dir",
                 str(data_dir), "--max-examples", "64"]) == 0  # fmt: skip
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["task"] == "mr" and metrics["examples"] == 64 and 0.0 <= metrics["accuracy"] <= 1.0
    assert main(["evaluate", "--adapter", str(adapter_dir), "--head", "sst2", "--task", "rte", "--data-dir",
                 str(data_dir), "--max-examples", "8"]) == 2  # fmt: skip
    assert "cannot score task 'rte'" in capsys.readouterr().err

    assert main(["predict", "--adapter", str(adapter_dir), "a gorgeous, witty film", "a tired, dull mess"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["label"] for line in lines] == ["positive", "negative"]


def test_pipeline_reload_gives_identical_logits(data_dir: Path, tmp_path: Path) -> None:
    from adapter_fusion import AdapterModel, save_adapter
    from adapter_fusion.models import load_tokenizer

    torch.manual_seed(0)
    model = AdapterModel.from_pretrained().eval()
    model.add_adapter("sst2")
    model.add_classification_head("sst2", 2, label_names=("negative", "positive"), task="sst2")
    with torch.no_grad():
        for parameter in model.adapters.adapters["sst2"].parameters():
            parameter.normal_(std=0.05)
    save_adapter(model, "sst2", tmp_path / "sst2", head="sst2")
    tokenizer = load_tokenizer()
    batch = tokenizer(["one film", "another, longer film review"], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(**batch).logits
        torch.manual_seed(123)
        pipeline = FusionPipeline.from_pretrained(tmp_path / "sst2")
        assert torch.equal(pipeline.model(**batch, head=pipeline.head_for("sentiment")).logits, expected)


def test_cli_train_fusion_then_pipeline_reload(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, outputs_at_save
) -> None:
    """Two (random, saved) adapters on the real MiniLM, an attention fusion trained briefly on real RTE data via
    the CLI; the saved fusion reloads (directly and in the pipeline) with the trained model's own logits."""
    from adapter_fusion import AdapterModel, save_adapter
    from adapter_fusion.models import load_tokenizer
    from adapter_fusion.models.fusion_model import load_fusion

    torch.manual_seed(0)
    model = AdapterModel.from_pretrained()
    for name in ("rte", "mnli"):
        model.add_adapter(name)
        with torch.no_grad():
            for parameter in model.adapters.adapters[name].parameters():
                parameter.normal_(std=0.02)
        save_adapter(model, name, tmp_path / name, metadata={"task": name})
    batch = load_tokenizer()(["A man sleeps.", "Two dogs run."], ["A person rests.", "Cats sit."], padding=True,
                             return_tensors="pt")  # fmt: skip
    trained = outputs_at_save(lambda fusion_model: fusion_model(**batch).logits)
    code = main([
        "train-fusion", "--task", "rte", "--adapters", str(tmp_path / "rte"), str(tmp_path / "mnli"),
        "--method", "attention", "--data-dir", str(data_dir), "--output", str(tmp_path / "fusion"),
        "--output-dir", str(tmp_path / "runs"), "--max-train-examples", "64", "--max-eval-examples", "32",
        "--max-steps", "4", "--batch-size", "16", "--disable-tqdm", "true", "--seed", "0",
    ])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "attention fusion of ['rte', 'mnli'] for rte (sequential)" in out
    assert len(trained) == 1
    torch.manual_seed(123)  # nothing may depend on fresh initialisation
    reloaded = load_fusion(tmp_path / "fusion")
    pipeline = FusionPipeline.from_pretrained(tmp_path / "fusion")
    with torch.no_grad():
        assert torch.equal(reloaded(**batch).logits, trained[0])
        assert torch.equal(pipeline.model(**batch).logits, trained[0])
    result = pipeline.predict("A man sleeps.", text_pairs="A person rests.", task="rte")
    assert result["label"] in ("entailment", "not_entailment")
    assert main(["evaluate", "--adapter", str(tmp_path / "fusion"), "--data-dir", str(data_dir),
                 "--max-examples", "16"]) == 0
    assert json.loads(capsys.readouterr().out)["examples"] == 16
