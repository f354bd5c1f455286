"""``fusion.saving`` exactly: every field ``save_fusion`` writes and its reload, the heads it keeps and the
active head, overwrite refused by default, the tensor files' metadata, the adapters' manifests; the inputs
``open_fusion`` / ``read_fusion_config`` / ``restore_fusion`` refuse, with the message naming the value and file.
Tiny random BERTs (the conftest ``tiny_bert_dir`` base)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from adapter_fusion.adapters import AdapterConfig
from adapter_fusion.fusion import FusionConfig
from adapter_fusion.fusion.saving import open_fusion, read_fusion_config, restore_fusion, save_fusion
from adapter_fusion.models.fusion_model import FusionModel, load_fusion
from adapter_fusion.models.saving import save_adapter
from conftest import make_batch, randomise_
from test_fusion import one_thread  # noqa: F401  (autouse: one intra-op thread)

ADAPTER = AdapterConfig(bottleneck_size=4)
CONFIG = FusionConfig(adapter_names=("a", "b"), temperature=1.5, attention_dropout=0.0)


def fusion_model(base: Path, config: FusionConfig = CONFIG) -> FusionModel:
    """Random adapters ``a``, ``b`` (inactive) fused by ``config``; heads ``x`` (three named labels, task sst2) and
    ``y``; ``y`` is the active head."""
    model = FusionModel.from_pretrained(str(base)).eval()
    for seed, name in enumerate(("a", "b"), start=1):
        model.add_adapter(name, ADAPTER, activate=False)
        randomise_(model.adapters.adapters[name], seed=seed, std=0.3)
    model.add_fusion(config)
    randomise_(model.fusion, seed=3, std=0.3)
    model.add_classification_head("x", num_labels=3, label_names=("neg", "mid", "pos"), task="sst2", dropout=0.0)
    model.add_classification_head("y", num_labels=2, dropout=0.0)
    randomise_(model.heads, seed=4, std=0.3)
    return model


@pytest.fixture
def saved(tiny_bert_dir: Path, tmp_path: Path) -> Path:
    return save_fusion(fusion_model(tiny_bert_dir), tmp_path / "fusion")


def config_of(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "fusion_config.json").read_text())


def rewrite(directory: Path, **changes: Any) -> None:
    """Rewrite ``fusion_config.json`` with ``changes`` (a value ``None`` removes the key)."""
    info = {**config_of(directory), **changes}
    (directory / "fusion_config.json").write_text(json.dumps({k: v for k, v in info.items() if v is not None}))


def exactly(text: str) -> str:
    return f"^{re.escape(text)}$"


def logits(model: FusionModel, head: str) -> torch.Tensor:
    with torch.no_grad():
        return model(**make_batch(batch=2, length=6), head=head).logits


# ------------------------------------------------------------------------------------------------ save_fusion
def test_saved_config_holds_every_field_and_reloads_to_the_same_fusion(tiny_bert_dir: Path, tmp_path: Path) -> None:
    model = fusion_model(tiny_bert_dir)
    model.fusion.set_temperature(3.0)  # the layers' temperature, not the config's, is what the fusion runs at
    directory = save_fusion(model, tmp_path / "fusion", metadata={"run": "one"})
    info = config_of(directory)
    assert info["fusion"] == CONFIG.to_dict()
    assert info["adapter_names"] == ["a", "b"]
    assert info["points"] == sorted(model.fusion.layers) and info["points"]
    assert info["temperature"] == 3.0
    assert info["heads"] == ["x", "y"] and info["active_head"] == "y"
    assert (info["hidden_size"], info["num_layers"], info["model_type"]) == (32, 2, "bert")
    assert info["base_model"] == str(tiny_bert_dir) and info["metadata"] == {"run": "one"}
    assert not {"base_adapter_names", "extensions", "hierarchy", "layer_temperatures"} & set(info)
    for weights in ("fusion.safetensors", "heads/x/head.safetensors", "heads/y/head.safetensors"):
        with safe_open(directory / weights, "pt") as handle:
            assert handle.metadata() == {"format": "pt"}, weights
    # the adapters inside record the same base model as the fusion, so each can be loaded and checked alone
    base = json.loads((directory / "manifest.json").read_text())["base_model"]
    assert base["name"] == str(tiny_bert_dir) and base["weights_sha256"]
    for name in ("a", "b"):
        assert json.loads((directory / "adapters" / name / "manifest.json").read_text())["base_model"] == base

    reloaded = load_fusion(directory)
    assert read_fusion_config(directory) == info
    assert reloaded.fusion.adapter_names == ("a", "b") and reloaded.adapters.list_adapters() == ["a", "b"]
    assert reloaded.adapters.active == ()  # after remove_fusion() the model runs without adapters, as before
    assert reloaded.fusion.config == CONFIG
    assert {layer.temperature for layer in reloaded.fusion.fusion_layers().values()} == {3.0}
    assert list(reloaded.heads) == ["x", "y"] and reloaded.active_head == "y"
    assert reloaded.head_config("x") == model.head_config("x") and reloaded.head_config("x").label_names == (
        "neg", "mid", "pos",
    )
    for head in ("x", "y"):
        torch.testing.assert_close(logits(reloaded, head), logits(model, head), rtol=0, atol=0)


@pytest.mark.parametrize(("heads", "restored_active"), [(["x"], "x"), ([], None)])
def test_a_subset_of_heads_is_saved_without_the_active_head_it_leaves_out(
    tiny_bert_dir: Path, tmp_path: Path, heads: list[str], restored_active: str | None
) -> None:
    model = fusion_model(tiny_bert_dir)  # y is active and not saved
    directory = save_fusion(model, tmp_path / "fusion", heads=heads)
    info = config_of(directory)
    assert info["heads"] == heads and info["active_head"] is None
    assert sorted(p.name for p in directory.glob("heads/*")) == heads
    reloaded = load_fusion(directory)
    assert list(reloaded.heads) == heads and reloaded.active_head == restored_active  # the first saved head
    with pytest.raises(KeyError, match=r"no head named 'z'; available: \['x', 'y'\]"):
        save_fusion(model, tmp_path / "other", heads=["z"])


def test_an_existing_fusion_is_replaced_only_with_overwrite(tiny_bert_dir: Path, tmp_path: Path) -> None:
    model = fusion_model(tiny_bert_dir)
    directory = save_fusion(model, tmp_path / "fusion")
    before = {p: p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}
    model.fusion.set_temperature(2.0)
    with pytest.raises(FileExistsError, match="already holds a saved fusion; pass overwrite=True"):
        save_fusion(model, directory)
    assert {p: p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()} == before
    assert save_fusion(model, directory, overwrite=True) == directory
    assert config_of(directory)["temperature"] == 2.0


def test_a_fusion_loaded_from_paths_records_its_adapter_names_and_no_paths(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    """Named by the adapters' own names (the config named none); no fusion points: the config's temperature."""
    source = fusion_model(tiny_bert_dir)
    paths = [save_adapter(source, name, tmp_path / name) for name in ("a", "b")]
    model = FusionModel.from_adapters(paths, FusionConfig(fusion_layers=(), temperature=2.5))
    directory = save_fusion(model, tmp_path / "fusion")
    info = config_of(directory)
    assert info["fusion"] == FusionConfig(adapter_names=("a", "b"), fusion_layers=(), temperature=2.5).to_dict()
    assert info["fusion"]["adapter_paths"] == [] and info["adapter_names"] == ["a", "b"]
    assert (info["points"], info["temperature"]) == ([], 2.5)
    assert load_fusion(directory).fusion.adapter_names == ("a", "b")


def test_an_extended_fusion_records_its_base_adapters_in_the_config(tiny_bert_dir: Path, tmp_path: Path) -> None:
    model = fusion_model(tiny_bert_dir)
    model.add_adapter("c", ADAPTER, activate=False)
    model.extend_fusion("c", task="third")
    info = config_of(save_fusion(model, tmp_path / "fusion"))
    assert info["fusion"]["adapter_names"] == ["a", "b"] and info["base_adapter_names"] == ["a", "b"]
    assert info["adapter_names"] == ["a", "b", "c"]
    assert info["extensions"] == [{"task": "third", "adapters": ["c"]}]


# ------------------------------------------------------------------------------------------------ open_fusion
def test_a_missing_or_foreign_directory_is_refused_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError, match=exactly(f"fusion directory {missing} does not exist")):
        open_fusion(missing)
    (tmp_path / "b.txt").write_text("b")
    (tmp_path / "a.txt").write_text("a")
    with pytest.raises(NotADirectoryError, match=exactly(
        f"{tmp_path / 'a.txt'} is a file; a saved fusion is a directory (give the folder it was saved to)"
    )):  # fmt: skip
        open_fusion(tmp_path / "a.txt")
    with pytest.raises(FileNotFoundError, match=exactly(
        f"{tmp_path} is not a fusion directory: no fusion_config.json (it holds ['a.txt', 'b.txt'])"
    )):  # fmt: skip
        open_fusion(tmp_path)


def test_a_modified_fusion_is_read_only_when_allowed(saved: Path) -> None:
    info = config_of(saved)
    assert read_fusion_config(saved) == info
    assert open_fusion(saved)[0] == info and open_fusion(saved)[1]["kind"] == "fusion"
    rewrite(saved, note="edited")
    for read in (read_fusion_config, lambda path: open_fusion(path)[0]):
        with pytest.raises(ValueError, match="fusion_config.json changed after the fusion was saved"):
            read(saved)
    assert read_fusion_config(saved, allow_modified=True) == {**info, "note": "edited"}
    assert open_fusion(saved, allow_modified=True)[0] == {**info, "note": "edited"}


@pytest.mark.parametrize("dropped", ["adapter_names", "heads", "fusion", "points", "all"])
def test_a_config_without_a_required_key_is_refused(saved: Path, dropped: str) -> None:
    if dropped == "all":
        (saved / "fusion_config.json").write_text("[]")
    else:
        rewrite(saved, **{dropped: None})
    with pytest.raises(ValueError, match=exactly(
        f"{saved / 'fusion_config.json'} lacks adapter_names, heads, fusion or points"
    )):  # fmt: skip
        open_fusion(saved, allow_modified=True)


def test_the_four_required_keys_alone_are_enough_to_open(saved: Path) -> None:
    info = {key: config_of(saved)[key] for key in ("adapter_names", "heads", "fusion", "points")}
    (saved / "fusion_config.json").write_text(json.dumps(info))
    assert open_fusion(saved, allow_modified=True)[0] == info


def test_a_head_name_that_is_a_path_is_refused_naming_the_file(saved: Path) -> None:
    rewrite(saved, heads=["x", "../x"])
    with pytest.raises(ValueError, match="^" + re.escape(
        f"head name in {saved / 'fusion_config.json'} must be a plain identifier"
    )):  # fmt: skip
        open_fusion(saved, allow_modified=True)


def legacy(directory: Path, **changes: Any) -> None:
    """Make ``directory`` a fusion as saved before manifests: no manifest.json, no format_version, ``changes``."""
    (directory / "manifest.json").unlink()
    rewrite(directory, format_version=None, **changes)


@pytest.mark.parametrize(("kind", "name"), [("adapter", "adapters/b"), ("head", "heads/x")])
def test_an_adapter_or_head_linked_from_outside_is_refused(saved: Path, tmp_path: Path, kind: str, name: str) -> None:
    legacy(saved)  # no manifest to catch the link first
    outside = tmp_path / "outside"
    (saved / name).rename(outside)
    (saved / name).symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="^" + re.escape(f"{kind} points outside {saved}; an artefact may only")):
        open_fusion(saved)


def test_a_legacy_fusion_is_checked_against_its_recorded_checksums(saved: Path) -> None:
    weights = saved / "fusion.safetensors"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    legacy(saved, checksums={"fusion.safetensors": digest})
    assert open_fusion(saved)[0]["checksums"] == {"fusion.safetensors": digest} and open_fusion(saved)[1] is None
    rewrite(saved, checksums={"fusion.safetensors": "0" * 64})
    with pytest.raises(ValueError, match=exactly(
        f"{weights} changed after the fusion was saved (checksum mismatch); re-save the fusion"
    )):  # fmt: skip
        open_fusion(saved)
    rewrite(saved, checksums={"heads/x/gone.safetensors": digest})
    missing = f"fusion directory {saved} is missing heads/x/gone.safetensors"
    with pytest.raises(FileNotFoundError, match=exactly(missing)):
        open_fusion(saved)
    rewrite(saved, checksums={"../fusion.safetensors": digest})
    with pytest.raises(ValueError, match="^" + re.escape(
        f"checksummed file '../fusion.safetensors' in {saved / 'fusion_config.json'} points outside {saved};"
    )):  # fmt: skip
        open_fusion(saved)
    rewrite(saved, checksums=None)  # a legacy fusion that recorded none
    assert "checksums" not in open_fusion(saved)[0]


# --------------------------------------------------------------------------------------------- restore_fusion
def restore(base: Path, directory: Path, **changes: Any) -> FusionModel:
    """``restore_fusion`` on a fresh model of ``base``, with ``changes`` to the saved config (files unchecked)."""
    return restore_fusion(FusionModel.from_pretrained(str(base)), directory, {**config_of(directory), **changes})


@pytest.mark.parametrize(("changes", "saved_for"), [
    ({"hidden_size": 64}, "a 'bert' model of hidden size 64"),
    ({"model_type": "roberta"}, "a 'roberta' model of hidden size 32"),
])  # fmt: skip
def test_another_geometry_is_refused_naming_both(
    tiny_bert_dir: Path, saved: Path, changes: dict[str, Any], saved_for: str
) -> None:
    with pytest.raises(ValueError, match=exactly(
        f"fusion at {saved} was saved for {saved_for}; the base model is a 'bert' of hidden size 32"
    )):  # fmt: skip
        restore(tiny_bert_dir, saved, **changes)


@pytest.mark.parametrize("file", ["adapter_config.json", "adapter.safetensors"])
def test_a_missing_adapter_file_is_named(tiny_bert_dir: Path, saved: Path, file: str) -> None:
    (saved / "adapters" / "b" / file).unlink()
    with pytest.raises(FileNotFoundError, match=exactly(f"fusion directory {saved} is missing adapters/b/{file}")):
        restore(tiny_bert_dir, saved)


def test_the_fusion_config_names_the_adapters_and_their_directories_bring_no_heads(
    tiny_bert_dir: Path, saved: Path
) -> None:
    """An adapter directory inside the fusion that records another name, or carries a head of its own (as a saved
    adapter directory may), is still adapter ``b`` of the fusion, and the heads are those under ``heads/``."""
    config_path = saved / "adapters" / "b" / "adapter_config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "name": "renamed"}))
    for file in ("head_config.json", "head.safetensors"):
        shutil.copy(saved / "heads" / "x" / file, saved / "adapters" / "a" / file)
    model = restore(tiny_bert_dir, saved)
    assert model.adapters.list_adapters() == ["a", "b"] and model.fusion.adapter_names == ("a", "b")
    assert list(model.heads) == ["x", "y"] and model.adapters.active == ()


def test_other_points_than_the_rebuilt_fusion_are_refused(tiny_bert_dir: Path, saved: Path) -> None:
    points = config_of(saved)["points"]
    with pytest.raises(ValueError, match=exactly(f"rebuilt fusion has points {points}, the saved one ['0_ffn']")):
        restore(tiny_bert_dir, saved, points=["0_ffn"])


@pytest.mark.parametrize(("file", "what"), [
    ("fusion.safetensors", "fusion weights at {saved}"), ("heads/x/head.safetensors", "head 'x' at {saved}"),
])  # fmt: skip
def test_weights_with_another_key_set_are_refused_naming_them(
    tiny_bert_dir: Path, saved: Path, file: str, what: str
) -> None:
    save_file({**load_file(saved / file), "extra": torch.zeros(1)}, saved / file)
    with pytest.raises(ValueError, match=exactly(
        f"{what.format(saved=saved)} does not fit this model: missing keys [], unexpected keys ['extra']"
    )):  # fmt: skip
        restore(tiny_bert_dir, saved)


def test_a_missing_head_weights_file_is_named(tiny_bert_dir: Path, saved: Path) -> None:
    (saved / "heads" / "x" / "head.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=exactly(f"missing weights file {saved / 'heads/x/head.safetensors'}")):
        restore(tiny_bert_dir, saved)


@pytest.mark.parametrize(("recorded", "active"), [("x", "x"), ("y", "y"), (None, "x")])
def test_the_recorded_active_head_else_the_first_is_restored(
    tiny_bert_dir: Path, saved: Path, recorded: str | None, active: str
) -> None:
    assert restore(tiny_bert_dir, saved, active_head=recorded).active_head == active
