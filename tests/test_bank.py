"""The shipped bank of source adapters: ``bank:NAME`` references, cards, and (realdata) the shipped scores."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import adapter_fusion.bank
from adapter_fusion import AdapterConfig, FusionConfig, FusionPipeline
from adapter_fusion.bank import (
    BANK_ENV,
    BANK_VERSION,
    SLICE_EXAMPLES,
    SLICE_SEED,
    bank_directory,
    bank_versions,
    list_bank,
    read_card,
    resolve_artefact,
)
from adapter_fusion.bank.ship import files_checksum, render_card, ship_adapter
from adapter_fusion.evaluation.evaluate import evaluate_adapter
from adapter_fusion.models import AdapterModel, default_model_path, load_tokenizer, save_adapter
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
    load_tokenizer(default_model_path()).save_pretrained(base)  # the pipeline loads one (4.57 needs its files)
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
    assert resolve_artefact("plain/path/deeper") == Path("plain/path/deeper")  # "org/name" alone: a Hub id
    assert resolve_artefact(Path("plain/path")) == Path("plain/path")  # a Path is always a path (tests/test_hub.py)
    assert read_card("b")["name"] == "b"


@pytest.mark.parametrize("reference, error, message", [
    ("bank:nope", KeyError, "no adapter 'nope' in the bank"),
    ("bank:a@", ValueError, r"bank version must be v<number> \(bank:NAME@v1\); got '' in 'bank:a@'"),
    ("bank:a@latest", ValueError, "got 'latest' in 'bank:a@latest'"),
    ("bank:a@v99", ValueError, "bank version must be one of v1, v2; got 'v99'"),
    ("bank:a@v1/x", ValueError, "got 'v1/x'"),
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


def test_a_shipped_version_is_pinned_by_name(tiny_bank: Path) -> None:
    """``bank:NAME@vN`` reads the package's version N whatever ``$ADAPTER_FUSION_BANK`` says; plain ``bank:NAME`` the
    configured bank, else the current version."""
    assert bank_versions()[:2] == ["v1", "v2"] and bank_versions()[-1] == BANK_VERSION
    shipped = Path(adapter_fusion.bank.__file__).parent
    assert resolve_artefact("bank:sst2@v1") == shipped / "v1" / "sst2"
    assert bank_directory("v2") == shipped / "v2" and list_bank("v1") == ["ag_news", "imdb", "mnli_plus", "sst2"]
    assert read_card("sst2@v1")["task"] == "sst2" and read_card("a")["name"] == "a"
    with pytest.raises(KeyError, match=r"no adapter 'a' in the bank at .*v1; it holds: ag_news, imdb"):
        resolve_artefact("bank:a@v1")


def test_cli_lists_a_pinned_version(capsys: pytest.CaptureFixture) -> None:
    from adapter_fusion.cli import main

    assert main(["list-bank", "--bank-version", "v1"]) == 0
    out = capsys.readouterr().out
    assert "bank:sst2@v1" in out and "accuracy 0.8601" in out and "4 adapters in" in out


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


SHIPPED = [f"{name}@{version}" for version in bank_versions() for name in list_bank(version)]


@pytest.mark.realdata
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_bank_adapter_reproduces_its_card(name: str, data_dir: Path) -> None:
    """Each shipped adapter (every version) scores, on the card's fixed dev slice, what its card says (within one
    example)."""
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


def test_bank_adapter_refused_on_another_base_model_of_the_same_geometry(tiny_bank: Path) -> None:
    other = tiny_bank.parent / "other"
    build_tiny_model("bert", seed=1).save_pretrained(other)  # same shapes, other weights
    with pytest.raises(ValueError, match="was saved on base model .* their weights differ"):
        FusionModel.from_adapters(["bank:a"], model=str(other))
    FusionModel.from_adapters(["bank:a"], model=str(other), allow_other_base=True)


def test_ship_adapter_writes_a_verified_adapter_and_its_card(tiny_cli_env: dict[str, Path], tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    model = AdapterModel.from_pretrained(str(tiny_cli_env["model"]))
    model.add_adapter("sst2", AdapterConfig(bottleneck_size=4))
    model.add_classification_head("sst2", num_labels=2, label_names=("negative", "positive"))
    trained = save_adapter(model, "sst2", tmp_path / "trained", head="sst2", metadata={"task": "sst2"})
    monkeypatch.setenv(BANK_ENV, str(tmp_path / "bank"))
    (tmp_path / "bank").mkdir()
    metrics = {"train_examples": 24, "train_seconds": 1.5, "global_step": 3, "epoch": 1.0, "seed": 1,
               "accuracy": 0.5}  # fmt: skip
    for _ in range(2):  # shipping again replaces the shipped copy (same weights: the dev score is kept)
        card_path = ship_adapter(trained, "toy", task="sst2", recipe="a toy", command="adapter-fusion ...",
                                 metrics=metrics, trained_on="a test", data_dir=tiny_cli_env["data"])
    assert card_path == tmp_path / "bank" / "toy.md" and "# bank:toy" in card_path.read_text()
    card = read_card("toy")
    assert card["dev"]["examples"] == 8 and card["dev_slice"]["examples"] == 8
    assert card["base_model_checksum"] and card["training"]["global_step"] == 3
    assert (tmp_path / "bank" / "toy" / "manifest.json").is_file()
    shipped = FusionPipeline.from_pretrained("bank:toy")  # loads verified against its manifest
    assert shipped.predict("good fine lovely", task="sst2")["label"] in ("negative", "positive")
    assert sorted(p.name for p in (tmp_path / "bank").iterdir()) == ["toy", "toy.md"]  # nothing left behind
    assert "`adapter-fusion evaluate --adapter bank:toy` (the whole dev split;" in card_path.read_text()

    # a dev split too long to score on a CPU: the card holds the first N after the fixed shuffle, and says so
    card_path = ship_adapter(trained, "capped", task="sst2", recipe="a toy", command="adapter-fusion ...",
                             metrics=metrics, trained_on="a test", data_dir=tiny_cli_env["data"], dev_max_examples=5)
    card = read_card("capped")
    assert card["dev"]["examples"] == 5 and card["dev"]["subset_of"] == 8 and card["dev_slice"]["examples"] == 8
    measured = evaluate_adapter("bank:capped", "sst2", "validation", tiny_cli_env["data"], max_examples=5)
    assert card["dev"] == {**measured, "subset_of": 8}
    text = card_path.read_text()
    assert "- dev (validation, 5 examples):" in text
    assert "`adapter-fusion evaluate --adapter bank:capped --max-examples 5` (5 of the 8 dev examples;" in text
