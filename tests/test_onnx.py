"""ONNX export: an adapter model and a fusion model (bottleneck + LoRA) exported by the CLI run in ONNX Runtime
with other batch sizes and lengths than traced, and give PyTorch's logits within 1e-4; errors write nothing."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import onnxruntime
import pytest
import torch

from adapter_fusion.adapters import AdapterConfig, LoraConfig
from adapter_fusion.cli import main
from adapter_fusion.fusion import FusionConfig
from adapter_fusion.inference import FusionPipeline
from adapter_fusion.models import AdapterModel, default_model_path, load_tokenizer, save_adapter
from adapter_fusion.models.fusion_model import FusionModel
from conftest import build_tiny_model, randomise_

TEXTS = ["a first sentence, longer than the traced ones were: it has many more words in it", "two", "three words here",
         "and a fourth"]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT with MiniLM's vocabulary and tokenizer, saved together."""
    tokenizer = load_tokenizer(default_model_path())
    directory = tmp_path_factory.mktemp("tiny_bert")
    build_tiny_model("bert", seed=0, vocab_size=tokenizer.vocab_size, max_position_embeddings=128).save_pretrained(
        directory
    )
    tokenizer.save_pretrained(directory)
    return directory


def assert_onnx_matches(directory: Path, onnx_path: Path, head: str | None = None, texts=TEXTS) -> float:
    pipeline = FusionPipeline.from_pretrained(directory)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    worst = 0.0
    for batch in (texts, texts[:1], texts[1:3]):
        encoded = pipeline.tokenizer(batch, padding=True, return_tensors="pt")
        with torch.no_grad():
            expected = pipeline.model(**{k: encoded[k] for k in names}, head=head).logits.numpy()
        got = session.run(None, {k: encoded[k].numpy() for k in names})[0]
        assert got.shape == expected.shape
        worst = max(worst, float(abs(got - expected).max()))
    assert worst <= 1e-4
    return worst


def test_export_adapter_model_by_cli(tmp_path: Path, tiny_dir: Path) -> None:
    model = AdapterModel.from_pretrained(str(tiny_dir))
    model.add_adapter("sent", AdapterConfig(bottleneck_size=4, placement="houlsby"))
    model.add_classification_head("sent", 3, label_names=("neg", "neu", "pos"))
    randomise_(model.adapters.adapters["sent"], seed=1)
    save_adapter(model, "sent", tmp_path / "adapter", head="sent")
    out = tmp_path / "exported" / "adapter.onnx"
    assert main(["export", "--format", "onnx", str(tmp_path / "adapter"), str(out)]) == 0
    assert_onnx_matches(tmp_path / "adapter", out)
    metadata = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert metadata["base_model"] == str(tiny_dir) and json.loads(metadata["label_names"]) == ["neg", "neu", "pos"]
    assert [p.name for p in out.parent.iterdir()] == ["adapter.onnx"]  # no temporary file left


def test_export_fusion_of_lora_and_bottleneck(tmp_path: Path, tiny_dir: Path) -> None:
    model = FusionModel.from_pretrained(str(tiny_dir))
    model.add_adapter("bn", AdapterConfig(bottleneck_size=4), activate=False)
    model.add_adapter("lora", LoraConfig(r=2, target_modules=("query", "output.dense")), activate=False)
    for seed, name in enumerate(("bn", "lora")):
        randomise_(model.adapters.adapters[name], seed=seed)
    fuse = model.add_fusion(FusionConfig(adapter_names=("bn", "lora")))
    randomise_(fuse, seed=5, std=0.05)
    model.add_classification_head("first", 2)
    model.add_classification_head("second", 4)
    model.save_fusion(tmp_path / "fusion")
    out = tmp_path / "fusion.onnx"
    assert main(["export", "--format", "onnx", str(tmp_path / "fusion"), str(out), "--head", "first"]) == 0
    assert_onnx_matches(tmp_path / "fusion", out, head="first")
    metadata = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(metadata["adapters"]) == ["bn", "lora"] and metadata["fusion_method"] == "attention"


def test_export_errors_write_nothing(tmp_path: Path, tiny_dir: Path, capsys: pytest.CaptureFixture) -> None:
    model = AdapterModel.from_pretrained(str(tiny_dir))
    model.add_adapter("a", LoraConfig(r=2))
    model.add_classification_head("a", 2)
    save_adapter(model, "a", tmp_path / "a", head="a")
    assert main(["export", "--format", "onnx", str(tmp_path / "a"), str(tmp_path / "a.txt")]) == 2
    assert "output must be a .onnx file path; got" in capsys.readouterr().err
    assert main(["export", "--format", "onnx", str(tmp_path / "a"), str(tmp_path / "a.onnx"), "--head", "x"]) == 2
    assert "no head named 'x'; the directory holds ['a']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "--format", "tflite", str(tmp_path / "a"), str(tmp_path / "a.onnx")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


@pytest.mark.realdata
def test_export_minilm_fusion_on_real_sentences(tmp_path: Path, data_dir: Path) -> None:
    """The bundled MiniLM with a fusion of a LoRA and a bottleneck adapter, on SST-2 dev sentences."""
    model = FusionModel.from_pretrained()
    model.add_adapter("bn", AdapterConfig(), activate=False)
    model.add_adapter("lora", LoraConfig(r=8), activate=False)
    for seed, name in enumerate(("bn", "lora")):
        randomise_(model.adapters.adapters[name], seed=seed, std=0.02)
    model.add_fusion(FusionConfig(adapter_names=("bn", "lora")))
    model.add_classification_head("sst2", 2)
    model.save_fusion(tmp_path / "fusion")
    lines = (data_dir / "glue" / "SST-2" / "dev.tsv").read_text().splitlines()[1:9]
    texts = [line.split("\t")[0] for line in lines]
    out = tmp_path / "minilm.onnx"
    assert main(["export", "--format", "onnx", str(tmp_path / "fusion"), str(out)]) == 0
    assert assert_onnx_matches(tmp_path / "fusion", out, texts=texts) <= 1e-4
