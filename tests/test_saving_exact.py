"""Exactly what saving writes and loading reads: the JSON fields and file names of an adapter directory and its
manifest, the keyword arguments every loader passes on (name, head, activation), the messages that refuse an
output path, and the small helpers under them (issue 14: the mutants these tests kill are listed in the commit)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel

import adapter_fusion.io as io
from adapter_fusion._version import __version__
from adapter_fusion.manifest import verify_artefact
from adapter_fusion.models import AdapterModel, load_adapter, read_adapter_config, save_adapter
from adapter_fusion.models.install import load_head_weights
from adapter_fusion.models.loading import default_model_path, smollm2_path
from adapter_fusion.models.saving import attach_adapter, base_model_arguments, open_adapter, recorded_model_name
from conftest import adapter_model, trained_model

FIXTURES = Path(__file__).parent / "fixtures"
PEFT = FIXTURES / "peft" / "bert_layer_1"
ADAPTERHUB = FIXTURES / "adapterhub" / "bert"


# ------------------------------------------------------------------------------------------ what a save writes
def test_saved_config_and_manifest_hold_exactly_these_fields(saved: Path) -> None:
    config = json.loads((saved / "adapter_config.json").read_text())
    assert set(config) == {
        "name", "adapter_kind", "adapter", "hidden_size", "num_layers", "model_type", "base_model", "causal_lm",
        "library_version", "format_version", "metadata",
    }  # fmt: skip
    assert (config["name"], config["adapter_kind"], config["causal_lm"]) == ("task", "bottleneck", False)
    assert (config["library_version"], config["format_version"], config["metadata"]) == (__version__, 1, {})
    manifest = json.loads((saved / "manifest.json").read_text())
    assert set(manifest) == {"format", "format_version", "kind", "library_version", "base_model", "files"}
    assert (manifest["format"], manifest["format_version"], manifest["kind"]) == ("adapter-fusion", 1, "adapter")
    assert manifest["library_version"] == __version__
    assert set(manifest["files"]) == {
        "adapter_config.json", "adapter.safetensors", "head_config.json", "head.safetensors", "README.md"
    }  # fmt: skip
    for weights in ("adapter.safetensors", "head.safetensors"):
        with safe_open(saved / weights, "pt") as handle:
            assert handle.metadata() == {"format": "pt"}  # what transformers and the Hub expect of a .safetensors


def test_record_name_is_the_name_written(make_model: Callable, randomise: Callable, tmp_path: Path) -> None:
    model = trained_model(make_model, randomise, "bert")
    directory = save_adapter(model, "task", tmp_path / "out", record_name="renamed")
    assert read_adapter_config(directory)["name"] == "renamed"
    assert load_adapter(adapter_model(make_model, "bert", 0), directory) == "renamed"


@pytest.mark.parametrize(
    ("name_or_path", "recorded"),
    [(default_model_path(), "default"), (smollm2_path(), "smollm2"), ("org/model", "org/model"), (None, None)],
    ids=["bundled-minilm", "bundled-smollm2", "hub-id", "none"],
)
def test_bundled_models_are_recorded_by_their_short_names(name_or_path: str | None, recorded: str | None) -> None:
    assert recorded_model_name(name_or_path) == recorded


@pytest.mark.parametrize(
    ("info", "expected"),
    [({"causal_lm": True}, {"causal_lm": True}), ({"causal_lm": False}, {}), ({}, {}), ({"CAUSAL_LM": True}, {})],
)
def test_base_model_arguments(info: dict, expected: dict) -> None:
    assert base_model_arguments(info) == expected


# ------------------------------------------------------------------------------------------ what a load reads
def test_reading_checks_the_manifest_unless_allowed(saved: Path) -> None:
    with open(saved / "README.md", "a") as handle:
        handle.write("edited\n")
    for read in (read_adapter_config, open_adapter):
        with pytest.raises(ValueError, match=re.escape(f"{saved / 'README.md'} changed after the adapter was saved")):
            read(saved)
    assert read_adapter_config(saved, allow_modified=True)["name"] == "task"
    assert open_adapter(saved, allow_modified=True)[1]["kind"] == "adapter"


def test_a_file_is_refused_as_not_a_saved_adapter(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not an adapter")
    with pytest.raises(NotADirectoryError, match=re.escape(
        f"{notes} is a file; a saved adapter is a directory (give the folder it was saved to)"
    )):  # fmt: skip
        open_adapter(notes)
    with pytest.raises(FileNotFoundError, match=re.escape(f"adapter directory {tmp_path / 'gone'} does not exist")):
        open_adapter(tmp_path / "gone")


def test_an_empty_directory_is_named_as_holding_nothing(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty is missing adapter_config\.json; it holds nothing$"):
        read_adapter_config(tmp_path / "empty")


def test_geometry_error_names_the_directory(make_model: Callable, saved: Path) -> None:
    model = adapter_model(make_model, "bert", 0, hidden_size=64)
    message = f"adapter at {saved} was trained for hidden size 32, but the model has hidden size 64"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        load_adapter(model, saved)


@pytest.mark.parametrize("load_head", [True, False])
@pytest.mark.parametrize("source", ["ours", "adapterhub"])
def test_load_head_name_and_activate_are_passed_on(
    make_model: Callable, saved: Path, source: str, load_head: bool
) -> None:
    if source == "ours":
        model, directory, saved_name = adapter_model(make_model, "bert", 0), saved, "task"
    else:
        model, directory = AdapterModel.from_pretrained(str(ADAPTERHUB / "base")).eval(), ADAPTERHUB / "head"
        saved_name = read_adapter_config(directory)["name"]
        assert read_adapter_config(directory)["format"] == "adapterhub"
    name = load_adapter(model, directory, "given", load_head=load_head, activate=False)
    assert name == "given" and model.adapters.list_adapters() == ["given"]
    assert model.adapters.active == () and model.active_head is None
    assert list(model.heads) == (["given"] if load_head else [])
    assert load_adapter(model, directory, load_head=False) == saved_name
    assert model.adapters.active == (saved_name,)


def test_peft_directory_name_and_activate_are_passed_on() -> None:
    info = read_adapter_config(PEFT / "adapter")
    assert (info["format"], info["name"], info["adapter_kind"]) == ("peft", "adapter", "lora")
    model = AdapterModel(AutoModel.from_pretrained(PEFT / "base", attn_implementation="eager")).eval()
    assert load_adapter(model, PEFT / "adapter", "given", activate=False) == "given"
    assert model.adapters.active == ()
    assert load_adapter(model, PEFT / "adapter") == "adapter"
    assert model.adapters.active == ("adapter",)


@pytest.mark.parametrize("with_weights", [True, False])
@pytest.mark.parametrize("with_file", [True, False])
def test_head_weights_file_is_needed_only_by_a_head_with_weights(
    tmp_path: Path, with_weights: bool, with_file: bool
) -> None:
    head = nn.Linear(2, 2) if with_weights else nn.Identity()
    path = tmp_path / "head.safetensors"
    if with_file:
        save_file({"kept": torch.ones(1)}, str(path))
        assert set(load_head_weights(head, path)) == {"kept"}  # what the file holds, whatever the head
    elif with_weights:
        with pytest.raises(FileNotFoundError, match=f"missing weights file {re.escape(str(path))}"):
            load_head_weights(head, path)
    else:
        assert load_head_weights(head, path) == {}  # a causal-LM head has no weights and needs no file


def test_a_directory_saved_without_a_manifest_or_config_is_unverified(tmp_path: Path) -> None:
    assert verify_artefact(tmp_path, "adapter") is None


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ([1, 2], "must hold a JSON object; got list"),
        ("task", "must hold a JSON object; got str"),
        ({"name": "task", "adapter": {}, "num_layers": 2},
         "lacks the keys ['hidden_size', 'model_type']; is it an adapter-fusion adapter?"),
    ],
)  # fmt: skip
def test_an_adapter_config_that_is_not_ours_is_refused_naming_the_file(
    tmp_path: Path, config: object, problem: str
) -> None:
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    (tmp_path / "adapter.safetensors").write_bytes(b"")  # never read: the config is refused first
    message = f"{tmp_path / 'adapter_config.json'} {problem}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        read_adapter_config(tmp_path)


def test_attach_adapter_loads_the_head_and_activates_by_default(make_model: Callable, saved: Path) -> None:
    model = adapter_model(make_model, "bert", 0)
    assert attach_adapter(model, saved, read_adapter_config(saved)) == "task"
    assert (model.adapters.list_adapters(), list(model.heads)) == (["task"], ["task"])
    assert (model.adapters.active, model.active_head) == (("task",), "task")
    written = load_file(saved / "head.safetensors")
    for key, tensor in model.heads["task"].state_dict().items():
        torch.testing.assert_close(tensor, written[key], rtol=0, atol=0)


def test_attach_adapter_errors_name_the_directory(make_model: Callable, saved: Path) -> None:
    info = read_adapter_config(saved)
    message = f"adapter at {saved} was trained for hidden size 32, but the model has hidden size 64"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        attach_adapter(adapter_model(make_model, "bert", 0, hidden_size=64), saved, info)
    model = adapter_model(make_model, "bert", 0)
    other_layer = {**info, "adapter": {**info["adapter"], "layers": [0]}}  # the weights are those of layer 1
    with pytest.raises(ValueError, match=f"^{re.escape(f'adapter at {saved} does not fit this model: missing keys')}"):
        attach_adapter(model, saved, other_layer)
    (saved / "head.safetensors").unlink()  # a classification head has weights: its file is needed
    with pytest.raises(FileNotFoundError, match=f"missing weights file {re.escape(str(saved / 'head.safetensors'))}"):
        attach_adapter(model, saved, info)
    assert model.adapters.list_adapters() == [] and list(model.heads) == []  # a failed load leaves nothing behind
    assert attach_adapter(model, saved, info, "bare", load_head=False, activate=False) == "bare"
    assert (model.adapters.list_adapters(), list(model.heads), model.adapters.active) == (["bare"], [], ())


# ------------------------------------------------------------------------------------------ output paths
def test_replacing_an_artefact_with_extra_files_names_three_of_them(make_model: Callable, saved: Path) -> None:
    for extra in ("a.txt", "b.txt", "c.txt", "d.txt"):
        (saved / extra).write_text("the user's own file")
    with pytest.raises(FileExistsError) as error:  # refused before the model is read
        save_adapter(adapter_model(make_model, "bert", 0), "task", saved, overwrite=True)
    assert str(error.value) == (
        f"output {saved} is a saved adapter that also holds files it was not saved with (a.txt, b.txt, c.txt); "
        "move them out first"
    )


@pytest.mark.parametrize(
    ("kind", "article"),
    [("adapter", "an"), ("fusion", "a"), ("AdapterHub adapter", "an"), ("AdapterHub fusion", "an")],
)
def test_refusal_uses_the_right_article(tmp_path: Path, kind: str, article: str) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(FileExistsError, match=f"; {article} {kind} is only written to a new path or over a saved"):
        io.check_output(tmp_path, kind)


def test_check_container(saved: Path, tmp_path: Path) -> None:
    assert io.check_container(str(tmp_path / "new" / "bank")) == tmp_path / "new" / "bank"
    (tmp_path / "plain").mkdir()
    assert io.check_container(tmp_path / "plain") == tmp_path / "plain"
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError) as error:
        io.check_container(tmp_path / "file")
    assert str(error.value) == f"output {tmp_path / 'file'} is an existing file; give a directory to hold the adapters"
    with pytest.raises(FileExistsError) as error:
        io.check_container(saved)
    assert str(error.value) == f"output {saved} is a saved adapter; give a directory to hold the adapters"


@pytest.mark.parametrize(
    ("directory", "root"),
    [
        ("hub/models--org--name/snapshots/abc123", "hub/models--org--name"),
        ("hub/datasets--org--name/snapshots/abc123", None),
        ("hub/models--org--name/refs/abc123", None),
        ("hub/MODELS--org--name/snapshots/abc123", None),
        ("snapshots/abc123", None),
    ],
)
def test_hub_snapshot_root(tmp_path: Path, directory: str, root: str | None) -> None:
    assert io.hub_snapshot_root(tmp_path / directory) == (tmp_path / root if root else None)


@pytest.mark.parametrize("relative", ["adapter.safetensors", "sub/head.json", "link-inside"])
def test_inside_accepts_a_path_that_stays_in_the_artefact(tmp_path: Path, relative: str) -> None:
    (tmp_path / "adapter.safetensors").write_bytes(b"")
    (tmp_path / "link-inside").symlink_to(tmp_path / "adapter.safetensors")
    assert io.inside(tmp_path, relative, "file") == tmp_path / relative


@pytest.mark.parametrize("relative", ["", ".", "sub/../adapter.safetensors", "../other", "link-out", "ABSOLUTE"])
def test_inside_refuses_a_path_leading_out_or_round_about(tmp_path: Path, relative: str) -> None:
    artefact, outside = tmp_path / "artefact", tmp_path / "other"
    artefact.mkdir()
    outside.write_text("x")
    (artefact / "link-out").symlink_to(outside)
    relative = str(artefact / "adapter.safetensors") if relative == "ABSOLUTE" else relative  # inside, but absolute
    message = f"file {relative!r} points outside {artefact}; an artefact may only reference files inside itself"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        io.inside(artefact, relative, f"file {relative!r}")


def test_inside_a_hub_snapshot_reaches_its_blobs_and_its_own_files(tmp_path: Path) -> None:
    repository = tmp_path / "hub" / "models--org--name"
    (repository / "blobs").mkdir(parents=True)
    (repository / "blobs" / "abc").write_text("x")
    (repository / "snapshots").mkdir()
    snapshot = repository / "snapshots" / "rev"
    elsewhere = tmp_path / "elsewhere"  # a snapshot folder that is itself a link: its own files are still inside
    elsewhere.mkdir()
    snapshot.symlink_to(elsewhere)
    (elsewhere / "adapter.safetensors").symlink_to(repository / "blobs" / "abc")
    (elsewhere / "own.json").write_text("{}")
    for relative in ("adapter.safetensors", "own.json"):
        assert io.inside(snapshot, relative, "file") == snapshot / relative
    (tmp_path / "secret").write_text("x")
    (elsewhere / "escape").symlink_to(tmp_path / "secret")  # out of the repository folder: refused
    with pytest.raises(ValueError, match=f"^file points outside {re.escape(str(snapshot))};"):
        io.inside(snapshot, "escape", "file")


def test_alive_only_asks(monkeypatch: pytest.MonkeyPatch) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert io._alive(child.pid)
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(timeout=0.3)  # asking sent no signal that ends it
    finally:
        child.kill()
        child.wait()
    assert not io._alive(child.pid)

    def not_ours(pid: int, signal: int) -> None:
        raise PermissionError(f"process {pid} belongs to another user")

    monkeypatch.setattr(os, "kill", not_ours)
    assert io._alive(12345)  # a process of another user is alive: its leftovers are not ours to remove
