"""The shipped bank of source adapters: ``bank:NAME`` references, cards, and (realdata) the shipped scores."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from adapter_fusion import AdapterConfig, FusionConfig, FusionPipeline
from adapter_fusion.bank import (
    BANK_ENV,
    SLICE_EXAMPLES,
    SLICE_SEED,
    bank_directory,
    files_checksum,
    list_bank,
    read_card,
    render_card,
    resolve_artefact,
)
from adapter_fusion.evaluation.evaluate import evaluate_adapter
from adapter_fusion.models import AdapterModel, save_adapter
from adapter_fusion.models.fusion_model import FusionModel
from adapter_fusion.tasks import get_task
from conftest import build_tiny_model, make_batch, randomise_

CARD = {
    "name": "toy", "task": "sst2", "recipe": "a toy recipe", "command": "adapter-fusion train-adapter --task sst2",
    "trained_on": "a test", "base_model": "tiny", "base_model_checksum": "0" * 64,
    "training": {"train_examples": 10, "train_seconds": 6.0, "global_step": 3, "epoch": 1.0, "seed": 1},
    "dev": {"split": "validation", "examples": 4, "accuracy": 0.75},
}


@pytest.fixture
def tiny_bank(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A bank of two tiny-BERT adapters (``a`` with a head, ``b`` without) under ``$ADAPTER_FUSION_BANK``."""
    base = tmp_path / "base"
    build_tiny_model("bert", seed=0).save_pretrained(base)
    model = AdapterModel.from_pretrained(str(base))
    model.add_classification_head("a", num_labels=2, label_names=("negative", "positive"))
    for index, name in enumerate(("a", "b")):
        model.add_adapter(name, AdapterConfig(bottleneck_size=4), activate=False)
        with torch.no_grad():
            randomise_(model.adapters.adapters[name], seed=index + 1)
        save_adapter(model, name, tmp_path / "bank" / name, head="a" if name == "a" else None,
                     metadata={"task": "sst2", "card": {**CARD, "name": name}})
    monkeypatch.setenv(BANK_ENV, str(tmp_path / "bank"))
    return base


def test_bank_references_resolve_and_cards_read(tiny_bank: Path) -> None:
    assert list_bank() == ["a", "b"]
    assert resolve_artefact("bank:a") == bank_directory() / "a"
    assert resolve_artefact("plain/path") == Path("plain/path")
    assert read_card("b")["name"] == "b"


@pytest.mark.parametrize("reference, error, message", [
    ("bank:nope", KeyError, "no adapter 'nope' in the bank"),
    ("bank:../a", ValueError, "bank adapter name must be"),
    ("bank:", ValueError, "bank adapter name must be"),
    ("bank:a/b", ValueError, "got 'a/b'"),
])
def test_bad_bank_references_are_refused(tiny_bank: Path, reference: str, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        resolve_artefact(reference)


def test_bank_adapters_fuse_and_predict_by_name(tiny_bank: Path) -> None:
    fused = FusionModel.from_adapters(["bank:a", "bank:b"], FusionConfig(fusion_method="attention"))
    assert fused.fusion.adapter_names == ("a", "b")
    batch = make_batch(batch=2, length=5)
    assert fused.encode(**batch).last_hidden_state.shape == (2, 5, 32)
    pipeline = FusionPipeline.from_pretrained("bank:a")
    direct = AdapterModel.from_pretrained(str(tiny_bank))
    assert pipeline.model.adapters.list_adapters() == ["a"] and direct.adapters.list_adapters() == []


def test_bank_adapter_refused_on_a_model_of_another_geometry(tiny_bank: Path) -> None:
    other = tiny_bank.parent / "wide"
    build_tiny_model("bert", seed=0, hidden_size=48).save_pretrained(other)
    with pytest.raises(ValueError, match="hidden size 32.*hidden size 48"):
        FusionModel.from_adapters(["bank:a"], model=str(other))


def test_card_renders_its_scores_and_command() -> None:
    text = render_card(CARD)
    assert "# bank:toy" in text and "accuracy 0.7500" in text and "`adapter-fusion train-adapter --task sst2`" in text


def test_files_checksum_changes_with_any_byte(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("{}")
    (tmp_path / "y.bin").write_bytes(b"\0\1")
    before = files_checksum(tmp_path)
    (tmp_path / "y.bin").write_bytes(b"\0\2")
    assert files_checksum(tmp_path) != before
    assert files_checksum(tmp_path, ("x.json",)) == files_checksum(tmp_path, ("x.json",))


@pytest.mark.realdata
@pytest.mark.parametrize("name", list_bank() if not __import__("os").environ.get(BANK_ENV) else [])
def test_shipped_bank_adapter_reproduces_its_card(name: str, data_dir: Path) -> None:
    """Each shipped adapter scores, on the card's fixed dev slice, what its card says (within one example)."""
    card = read_card(name)
    metric = get_task(card["task"]).main_metric
    measured = evaluate_adapter(f"bank:{name}", card["task"], "validation", data_dir, max_examples=SLICE_EXAMPLES,
                                seed=SLICE_SEED)
    assert measured["examples"] == card["dev_slice"]["examples"]
    assert measured[metric] == pytest.approx(card["dev_slice"][metric], abs=1.01 / SLICE_EXAMPLES)


def test_cli_lists_the_bank(tiny_bank: Path, capsys: pytest.CaptureFixture) -> None:
    from adapter_fusion.cli import main

    assert main(["list-bank"]) == 0
    out = capsys.readouterr().out
    assert "bank:a" in out and "task=sst2" in out and "accuracy 0.7500" in out and "2 adapters in" in out
