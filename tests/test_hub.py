"""Hub conventions: a model card in every saved adapter and fusion (checksummed by the manifest), push_to_hub
(HfApi recorded, no network), and loading by Hub id from a directory laid out as the Hub cache, offline."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from adapter_fusion import FusionConfig, FusionModel, FusionPipeline
from adapter_fusion.adapters import AdapterConfig
from adapter_fusion.cli import main
from adapter_fusion.hub import is_hub_reference
from adapter_fusion.hub_upload import push_to_hub
from adapter_fusion.models import AdapterModel, load_adapter, read_adapter_config

REVISION = "0123456789abcdef0123456789abcdef01234567"
TEXTS = ["good fine lovely", "bad dull"]


def trained(base: Path, name: str = "sst2", seed: int = 1) -> AdapterModel:
    model = AdapterModel.from_pretrained(str(base)).eval()
    model.add_adapter(name, AdapterConfig(bottleneck_size=4))
    model.add_classification_head(name, num_labels=2, label_names=("negative", "positive"), task="sst2")
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in [*model.adapters.adapters[name].parameters(), *model.heads[name].parameters()]:
            parameter.normal_(0, 0.2)
    return model


def logits(model: AdapterModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


def batch(model: AdapterModel) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {"input_ids": torch.randint(5, 60, (2, 6)), "attention_mask": torch.ones(2, 6, dtype=torch.long)}


def in_hub_cache(cache: Path, repo_id: str, saved: Path) -> Path:
    """Lay ``saved`` out as huggingface_hub's cache does: files in ``blobs/<sha256>``, linked from
    ``snapshots/<revision>/``, and ``refs/main`` holding the revision."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / REVISION
    for path in sorted(p for p in saved.rglob("*") if p.is_file()):
        blob = repo / "blobs" / hashlib.sha256(path.read_bytes()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, blob)
        link = snapshot / path.relative_to(saved)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path(*[".."] * (len(link.relative_to(repo).parts) - 1), "blobs", blob.name))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(REVISION)
    return snapshot


@pytest.fixture
def offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hub-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)  # "org/name" must not exist as a relative path
    return cache


class RecordingApi:
    """Stands in for ``huggingface_hub.HfApi``: records the calls and copies the uploaded folder."""

    calls: list[tuple[str, dict[str, Any]]] = []
    uploaded: Path

    def __init__(self, token: str | None = None) -> None:
        self.calls.append(("init", {"token": token}))

    def create_repo(self, repo_id: str, **options: Any) -> str:
        self.calls.append(("create_repo", {"repo_id": repo_id, **options}))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, *, repo_id: str, folder_path: str, **options: Any) -> None:
        self.calls.append(("upload_folder", {"repo_id": repo_id, **options}))
        shutil.copytree(folder_path, RecordingApi.uploaded)


def test_saved_adapter_has_a_card_covered_by_its_manifest(tiny_cli_env: dict[str, Path], tmp_path: Path) -> None:
    model = trained(tiny_cli_env["model"])
    directory = model.save_pretrained(tmp_path / "sst2", metrics={"accuracy": 0.75, "epoch": 2.0, "runtime": 3.1})
    card = (directory / "README.md").read_text()
    manifest = json.loads((directory / "manifest.json").read_text())
    assert "README.md" in manifest["files"]
    assert "- task: `sst2`" in card and "accuracy 0.7500" in card and "runtime" not in card and "epoch" not in card
    assert f"base model: `{tiny_cli_env['model']}` (bert, hidden size 32, 2 layers)" in card
    assert "reduction_factor" in card and 'placement="pfeiffer"' in card and "label_names" in card
    assert 'FusionPipeline.from_pretrained("path/to/this-directory")' in card
    assert "adapter-fusion predict --adapter path/to/this-directory" in card
    assert "adapter-fusion evaluate --adapter path/to/this-directory --task sst2" in card
    assert card.startswith("---\nlibrary_name: adapter-fusion\n")
    (directory / "README.md").write_text(card + "edited\n")  # the card is checksummed like every other file
    with pytest.raises(ValueError, match="README.md changed after the adapter was saved"):
        read_adapter_config(directory)


def test_saved_fusion_has_a_card(tiny_bert_dir: Path, tmp_path: Path) -> None:
    model = FusionModel.from_pretrained(str(tiny_bert_dir))
    for name in ("a", "b"):
        model.add_adapter(name, AdapterConfig(bottleneck_size=4), activate=False)
    model.add_fusion(FusionConfig(adapter_names=("a", "b")))
    model.add_classification_head("target", num_labels=2, task="rte")
    directory = model.save_pretrained(tmp_path / "fusion", task="rte")
    card = (directory / "README.md").read_text()
    assert "README.md" in json.loads((directory / "manifest.json").read_text())["files"]
    assert "method `attention` over adapters `a`, `b` at 2 points" in card and "heads: target" in card
    assert "- task: `rte`" in card and "- metrics: not recorded" in card
    assert not (directory / "adapters" / "a" / "README.md").exists()  # one card per artefact
    assert FusionModel.load_fusion(directory).fusion.adapter_names == ("a", "b")


def test_push_to_hub_uploads_weights_manifest_and_card(
    tiny_cli_env: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("huggingface_hub.HfApi", RecordingApi)
    RecordingApi.calls, RecordingApi.uploaded = [], tmp_path / "uploaded"
    model = trained(tiny_cli_env["model"])
    url = model.push_to_hub("org/sst2-adapter", private=True, token="t0k")
    assert url == "https://huggingface.co/org/sst2-adapter"
    assert RecordingApi.calls[0] == ("init", {"token": "t0k"})
    assert RecordingApi.calls[1] == (
        "create_repo", {"repo_id": "org/sst2-adapter", "private": True, "exist_ok": True, "repo_type": "model"},
    )  # fmt: skip
    assert RecordingApi.calls[2][0] == "upload_folder" and RecordingApi.calls[2][1]["repo_id"] == "org/sst2-adapter"
    uploaded = RecordingApi.uploaded
    assert {p.name for p in uploaded.iterdir()} == {
        "adapter_config.json", "adapter.safetensors", "head_config.json", "head.safetensors", "manifest.json",
        "README.md",
    }  # fmt: skip
    card = (uploaded / "README.md").read_text()
    assert 'FusionPipeline.from_pretrained("org/sst2-adapter")' in card and "path/to/this-directory" not in card
    fresh = AdapterModel.from_pretrained(str(tiny_cli_env["model"])).eval()
    load_adapter(fresh, uploaded)  # the upload verifies against its (rewritten) manifest
    assert torch.equal(logits(fresh, batch(fresh)), logits(model, batch(model)))


def test_push_to_hub_of_a_saved_fusion_and_of_the_bank(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("huggingface_hub.HfApi", RecordingApi)
    model = FusionModel.from_pretrained(str(tiny_bert_dir))
    model.add_adapter("a", AdapterConfig(bottleneck_size=4), activate=False)
    model.add_fusion(FusionConfig(adapter_names=("a",)))
    saved = model.save_pretrained(tmp_path / "fusion")
    before = {p.name: p.read_bytes() for p in saved.iterdir() if p.is_file()}
    RecordingApi.calls, RecordingApi.uploaded = [], tmp_path / "uploaded-fusion"
    model.push_to_hub("org/fusion", directory=saved)
    assert {p.name: p.read_bytes() for p in saved.iterdir() if p.is_file()} == before  # the source is unchanged
    assert (RecordingApi.uploaded / "fusion.safetensors").is_file()
    assert (RecordingApi.uploaded / "adapters" / "a" / "adapter.safetensors").is_file()
    assert 'from_pretrained("org/fusion")' in (RecordingApi.uploaded / "README.md").read_text()

    RecordingApi.calls, RecordingApi.uploaded = [], tmp_path / "uploaded-bank"
    push_to_hub("bank:sst2", "org/bank-sst2")  # a shipped bank adapter: its card gets the bank's dev scores
    card = (RecordingApi.uploaded / "README.md").read_text()
    assert "- task: `sst2`" in card and "metrics (validation): accuracy 0." in card
    assert read_adapter_config(RecordingApi.uploaded)["name"] == "sst2"
    with pytest.raises(ValueError, match="repo_id must be a Hub repository id of the form org/name; got 'sst2'"):
        push_to_hub("bank:sst2", "sst2")
    with pytest.raises(ValueError, match="is not a saved adapter or fusion directory"):
        push_to_hub(tmp_path, "org/x")


def test_load_by_hub_id_from_the_offline_cache(
    tiny_cli_env: dict[str, Path], tmp_path: Path, offline_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = trained(tiny_cli_env["model"])
    in_hub_cache(offline_cache, "org/sst2", model.save_pretrained(tmp_path / "saved"))
    assert is_hub_reference("org/sst2") and is_hub_reference("hf://org/sst2") and not is_hub_reference("bank:x")
    for reference in ("org/sst2", "hf://org/sst2", f"org/sst2@{REVISION}"):
        fresh = AdapterModel.from_pretrained(str(tiny_cli_env["model"])).eval()
        assert load_adapter(fresh, reference) == "sst2"
        assert torch.equal(logits(fresh, batch(fresh)), logits(model, batch(model)))
    pipeline = FusionPipeline.from_pretrained("org/sst2")
    expected = FusionPipeline.from_pretrained(tmp_path / "saved").predict(TEXTS)
    assert pipeline.predict(TEXTS) == expected
    assert main(["predict", "--adapter", "org/sst2", *TEXTS]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["label"] for row in printed] == [row["label"] for row in expected]


def test_load_fusion_by_hub_id_from_the_offline_cache(
    tiny_bert_dir: Path, tmp_path: Path, offline_cache: Path
) -> None:
    model = FusionModel.from_pretrained(str(tiny_bert_dir))
    for name in ("a", "b"):
        model.add_adapter(name, AdapterConfig(bottleneck_size=4), activate=False)
    model.add_fusion(FusionConfig(adapter_names=("a", "b")))
    model.add_classification_head("target", num_labels=2)
    torch.manual_seed(3)
    with torch.no_grad():
        for module in (model.fusion, model.heads, model.adapters.adapters):
            for parameter in module.parameters():
                parameter.add_(0.1 * torch.randn_like(parameter))
    model.eval()
    in_hub_cache(offline_cache, "org/fusion", model.save_pretrained(tmp_path / "saved"))
    loaded = FusionModel.load_fusion("hf://org/fusion")
    assert torch.equal(logits(loaded, batch(loaded)), logits(model, batch(model)))


def test_a_hub_id_not_in_the_cache_gets_a_one_line_error(
    tiny_cli_env: dict[str, Path], offline_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = AdapterModel.from_pretrained(str(tiny_cli_env["model"]))
    with pytest.raises(FileNotFoundError) as raised:
        load_adapter(model, "org/missing")
    message = str(raised.value)
    assert "\n" not in message and "'org/missing'" in message and "Hub cache (HF_HUB_OFFLINE is set)" in message
    assert "a local adapter or fusion directory, bank:NAME, or a Hub id" in message
    assert main(["evaluate", "--adapter", "org/missing", "--task", "sst2"]) == 2
    assert "'org/missing' is no local path and was not found in the Hub cache" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="'hf://org/missing'"):
        FusionModel.load_fusion("hf://org/missing")
    local = Path("org") / "here"  # an existing relative path is always a path, never a Hub id
    local.mkdir(parents=True)
    assert not is_hub_reference("org/here") and not is_hub_reference(Path("org/missing"))


def test_cli_push_to_hub(
    tiny_cli_env: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setattr("huggingface_hub.HfApi", RecordingApi)
    RecordingApi.calls, RecordingApi.uploaded = [], tmp_path / "uploaded"
    saved = trained(tiny_cli_env["model"]).save_pretrained(tmp_path / "sst2")
    assert main(["push-to-hub", str(saved), "org/sst2", "--private"]) == 0
    assert capsys.readouterr().out == f"uploaded {saved} to https://huggingface.co/org/sst2\n"
    assert RecordingApi.calls[1][1]["private"] is True and (RecordingApi.uploaded / "adapter.safetensors").is_file()
    assert main(["push-to-hub", str(saved), "not a repo"]) == 2
    assert "repo_id must be a Hub repository id of the form org/name; got 'not a repo'" in capsys.readouterr().err
