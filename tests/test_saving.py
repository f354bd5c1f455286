"""Save an adapter (+ head), reload it into a fresh model, get identical outputs; atomic writes; clear errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

import adapter_fusion.io
import adapter_fusion.models.saving as saving
from adapter_fusion.models import AdapterModel, load_adapter, read_adapter_config, save_adapter
from conftest import adapter_model, trained_model

ADAPTER_FILES = {"adapter_config.json", "adapter.safetensors", "manifest.json", "README.md"}
EXPECTED_FILES = ADAPTER_FILES | {"head_config.json", "head.safetensors"}


def logits(model: AdapterModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


def test_save_and_reload_under_another_seed(
    family: str, make_model: Callable, randomise: Callable, inputs_for: Callable, tmp_path: Path
) -> None:
    model = trained_model(make_model, randomise, family)
    batch = inputs_for(model.base)
    expected = logits(model, batch)
    directory = save_adapter(model, "task", tmp_path / "task", head="task", metadata={"note": "x"})

    assert {p.name for p in directory.iterdir()} == EXPECTED_FILES
    assert not [p for p in tmp_path.iterdir() if p.name != "task"]  # no temp or backup directories
    weights = load_file(str(directory / "adapter.safetensors"))
    expected_keys = {f"1_{loc}.{proj}.{kind}" for loc in ("attention", "ffn") for proj in ("down", "up")
                     for kind in ("weight", "bias")}
    assert set(weights) == expected_keys == set(model.adapters.adapters["task"].state_dict())
    assert set(load_file(str(directory / "head.safetensors"))) == {"dense.weight", "dense.bias", "out.weight",
                                                                    "out.bias"}
    info = read_adapter_config(directory)
    assert info["model_type"] == family and info["hidden_size"] == 32 and info["num_layers"] == 2
    assert info["metadata"] == {"note": "x"} and info["name"] == "task"

    fresh = adapter_model(make_model, family, seed=1)
    fresh.base.load_state_dict(model.base.state_dict())  # same base weights, everything else from another seed
    assert load_adapter(fresh, directory) == "task"
    assert fresh.adapters.active == ("task",) and fresh.active_head == "task"
    assert fresh.adapters.configs["task"] == model.adapters.configs["task"]
    assert fresh.head_config("task") == model.head_config("task")
    assert torch.equal(logits(fresh, batch), expected)


def test_load_under_another_name_without_head(make_model: Callable, randomise: Callable, tmp_path: Path) -> None:
    model = trained_model(make_model, randomise, "bert")
    save_adapter(model, "task", tmp_path / "a")  # no head
    assert {p.name for p in (tmp_path / "a").iterdir()} == ADAPTER_FILES
    fresh = adapter_model(make_model, "bert", seed=0)
    assert load_adapter(fresh, tmp_path / "a", name="renamed", activate=False) == "renamed"
    assert fresh.adapters.list_adapters() == ["renamed"] and fresh.adapters.active == ()
    for key, value in model.adapters.adapter_state_dict("task").items():
        assert torch.equal(fresh.adapters.adapter_state_dict("renamed")[key], value)


def test_saving_again_replaces_the_directory(make_model: Callable, randomise: Callable, tmp_path: Path) -> None:
    model = trained_model(make_model, randomise, "bert")
    directory = tmp_path / "task"
    save_adapter(model, "task", directory, head="task")
    with pytest.raises(FileExistsError, match="already holds a saved adapter; pass overwrite=True"):
        save_adapter(model, "task", directory)
    (directory / "notes.txt").write_text("the user's own file")
    with pytest.raises(FileExistsError, match=r"files it was not saved with \(notes.txt\)"):
        save_adapter(model, "task", directory, overwrite=True)
    (directory / "notes.txt").unlink()
    save_adapter(model, "task", directory, overwrite=True)
    assert {p.name for p in directory.iterdir()} == ADAPTER_FILES
    assert [p.name for p in tmp_path.iterdir()] == ["task"]


# ---------------------------------------------------------------------------------------------- errors
def test_missing_directory(make_model: Callable, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        load_adapter(adapter_model(make_model, "bert", 0), tmp_path / "does-not-exist")


def test_missing_weights_file(make_model: Callable, saved: Path) -> None:
    (saved / "adapter.safetensors").unlink()
    model = adapter_model(make_model, "bert", 0)
    with pytest.raises(FileNotFoundError, match=r"missing adapter\.safetensors.*adapter_config\.json"):
        load_adapter(model, saved)
    assert model.adapters.list_adapters() == []


def test_hidden_size_mismatch(make_model: Callable, saved: Path) -> None:
    model = adapter_model(make_model, "bert", 0, hidden_size=64)
    with pytest.raises(ValueError, match="hidden size 32.*hidden size 64"):
        load_adapter(model, saved)
    assert model.adapters.list_adapters() == [] and len(model.heads) == 0


def test_layer_count_mismatch(make_model: Callable, saved: Path) -> None:
    model = adapter_model(make_model, "bert", 0, num_hidden_layers=3)
    with pytest.raises(ValueError, match="2 layers.*3"):
        load_adapter(model, saved)


def test_other_architecture(make_model: Callable, randomise: Callable, tmp_path: Path) -> None:
    directory = save_adapter(trained_model(make_model, randomise, "gpt2"), "task", tmp_path / "gpt2", head="task")
    model = adapter_model(make_model, "bert", 0)
    with pytest.raises(ValueError, match="'gpt2'.*'bert'"):
        load_adapter(model, directory)
    assert model.adapters.list_adapters() == []


@pytest.mark.parametrize("corruption", ["drop", "extra", "rename", "shape"])
def test_corrupted_key_set(make_model: Callable, saved: Path, corruption: str) -> None:
    path = saved / "adapter.safetensors"
    weights = load_file(str(path))
    key = "1_ffn.up.weight"
    if corruption == "drop":
        del weights[key]
    elif corruption == "extra":
        weights["0_ffn.up.weight"] = weights[key].clone()
    elif corruption == "rename":
        weights["1_ffn.upp.weight"] = weights.pop(key)
    else:
        weights[key] = torch.zeros(32, 5)
    save_file(weights, str(path))
    model = adapter_model(make_model, "bert", 0)
    with pytest.raises(ValueError, match="adapter.safetensors changed after the adapter was saved"):
        load_adapter(model, saved)
    match = {"drop": rf"missing keys \['{key}'\]", "extra": r"unexpected keys \['0_ffn.up.weight'\]",
             "rename": r"missing keys \['1_ffn.up.weight'\], unexpected keys \['1_ffn.upp.weight'\]",
             "shape": r"'1_ffn.up.weight' has shape \(32, 5\).*\(32, 4\)"}[corruption]
    with pytest.raises(ValueError, match=match):  # past the manifest check, the exact key set is checked too
        load_adapter(model, saved, allow_modified=True)
    assert model.adapters.list_adapters() == [] and len(model.heads) == 0  # a failed load leaves nothing behind


def test_loading_twice_refuses_duplicate_name(make_model: Callable, saved: Path) -> None:
    model = adapter_model(make_model, "bert", 0)
    load_adapter(model, saved)
    with pytest.raises(ValueError, match="'task' already exists"):
        load_adapter(model, saved)
    load_adapter(model, saved, name="second", load_head=False)
    assert model.adapters.list_adapters() == ["task", "second"]


def test_save_unknown_adapter_or_head(make_model: Callable, randomise: Callable, tmp_path: Path) -> None:
    model = trained_model(make_model, randomise, "bert")
    with pytest.raises(KeyError, match="'nope'"):
        save_adapter(model, "nope", tmp_path / "x")
    with pytest.raises(KeyError, match="'nope'"):
        save_adapter(model, "task", tmp_path / "x", head="nope")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------- atomic writes
def _listing(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir()}


@pytest.mark.parametrize("fail_on", ["adapter.safetensors", "head.safetensors"])
def test_failed_save_leaves_no_temp_files_and_keeps_the_old_directory(
    make_model: Callable, randomise: Callable, saved: Path, monkeypatch: pytest.MonkeyPatch, fail_on: str
) -> None:
    before = _listing(saved)
    real_save = saving.save_tensors

    def flaky(path: Path, *args: Any, **kwargs: Any) -> None:
        if path.name == fail_on:
            raise OSError("disk full")
        real_save(path, *args, **kwargs)

    monkeypatch.setattr(saving, "save_tensors", flaky)
    other = trained_model(make_model, randomise, "bert")
    randomise(other.adapters.adapters["task"], seed=5)
    with pytest.raises(OSError, match="disk full"):
        save_adapter(other, "task", saved, head="task", overwrite=True)
    assert [p.name for p in saved.parent.iterdir()] == ["saved"]  # no .tmp / .old siblings
    assert _listing(saved) == before

    with pytest.raises(OSError, match="disk full"):
        save_adapter(other, "task", saved.parent / "new", head="task")
    assert [p.name for p in saved.parent.iterdir()] == ["saved"]  # a first save that fails creates nothing


def test_save_tensors_cleans_up_after_a_failed_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "w.safetensors"
    adapter_fusion.io.save_tensors(path, {"a": torch.ones(2)})
    before = path.read_bytes()

    def broken(tensors: dict, filename: str, metadata: Any = None) -> None:
        Path(filename).write_bytes(b"half written")
        raise RuntimeError("interrupted")

    monkeypatch.setattr(adapter_fusion.io, "save_file", broken)
    with pytest.raises(RuntimeError, match="interrupted"):
        adapter_fusion.io.save_tensors(path, {"a": torch.zeros(2)})
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]
    assert path.read_bytes() == before


def test_save_tensors_unties_shared_storage(tmp_path: Path) -> None:
    weight = torch.arange(6.0).reshape(2, 3)
    adapter_fusion.io.save_tensors(tmp_path / "t.safetensors", {"a": weight, "b": weight.T, "c": weight[0]})
    loaded = adapter_fusion.io.load_tensors(tmp_path / "t.safetensors")
    assert torch.equal(loaded["b"], weight.T) and torch.equal(loaded["c"], weight[0])
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        adapter_fusion.io.load_tensors(tmp_path / "missing.safetensors")


def test_corrupted_head_leaves_nothing_behind(make_model: Callable, saved: Path) -> None:
    path = saved / "head.safetensors"
    weights = load_file(str(path))
    del weights["out.bias"]
    save_file(weights, str(path))
    model = adapter_model(make_model, "bert", 0)
    with pytest.raises(ValueError, match=r"head.safetensors changed after the adapter was saved"):
        load_adapter(model, saved)
    with pytest.raises(ValueError, match=r"head at .*missing keys \['out.bias'\]"):
        load_adapter(model, saved, allow_modified=True)
    assert model.adapters.list_adapters() == [] and len(model.heads) == 0 and model.active_head is None


def test_existing_head_name_leaves_nothing_behind(make_model: Callable, saved: Path) -> None:
    model = adapter_model(make_model, "bert", 0)
    model.add_classification_head("task")
    with pytest.raises(ValueError, match="head named 'task' already exists"):
        load_adapter(model, saved)
    assert model.adapters.list_adapters() == [] and list(model.heads) == ["task"]
