"""Exactly what the manifest records and checks: the base-model identity (its fields, computed by hand here, and
its cache), the messages that refuse another base or a changed artefact (and the warnings that replace them when
the user allows it), the file checksum, and installing an adapter's weights exactly or not at all (issue 14: the
mutants these tests kill are listed in the commit)."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

import adapter_fusion.manifest as manifest_module
from adapter_fusion.adapters import AdapterConfig
from adapter_fusion.heads import HeadConfig
from adapter_fusion.manifest import VOLATILE_CONFIG_KEYS, base_identity, check_base, file_sha256, verify_artefact
from adapter_fusion.models import AdapterModel
from adapter_fusion.models.install import install_adapter, load_exact
from conftest import adapter_model, build_tiny_model


# ------------------------------------------------------------------------------------------ base_identity
def by_hand(body: torch.nn.Module, name: str | None) -> dict[str, Any]:
    """``base_identity`` written out: the config without private and volatile keys as sorted-key JSON, the
    tensors in sorted-name order as ``name:dtype:shape;`` then their bytes, the floating dtypes joined by commas."""
    config = {k: v for k, v in body.config.to_diff_dict().items() if k[0] != "_" and k not in VOLATILE_CONFIG_KEYS}
    weights = hashlib.sha256()
    state = body.state_dict()
    for key in sorted(state):
        tensor = state[key]
        weights.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        weights.update(tensor.detach().contiguous().numpy().tobytes())
    dtypes = sorted({str(t.dtype)[len("torch.") :] for t in state.values() if t.is_floating_point()})
    return {
        "name": name,
        "config_sha256": hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest(),
        "weights_sha256": weights.hexdigest(),
        "dtype": ",".join(dtypes),
    }


def test_base_identity_is_exactly_these_checksums() -> None:
    # a value JSON cannot encode (a path), a private key (ignored) and two float dtypes
    body = build_tiny_model("bert", seed=3, source_path=Path("somewhere"))
    body.config._loaded_from = "private/and/ignored"
    assert "_loaded_from" in body.config.to_diff_dict()
    body.embeddings.word_embeddings.half()
    expected = by_hand(body, "tiny")
    assert expected["dtype"] == "float16,float32"
    assert list(body.config.to_diff_dict()) != sorted(body.config.to_diff_dict())  # so the key order matters
    assert base_identity(body, "tiny") == expected
    # the transformer body of an AdapterModel is the base: the same identity as the bare model
    assert base_identity(AdapterModel(body), None) == {**expected, "name": None}
    # a private config key says nothing about the network
    body.config._loaded_from = "elsewhere"
    assert base_identity(body, "tiny")["config_sha256"] == expected["config_sha256"]


def test_base_identity_hashes_the_weights_once_until_one_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    model = build_tiny_model("bert", seed=4)
    first = base_identity(model, "m")
    calls: list[int] = []

    def counting(*args: Any) -> Any:
        calls.append(1)
        return hashlib.sha256(*args)

    monkeypatch.setattr(manifest_module, "hashlib", SimpleNamespace(sha256=counting))
    assert base_identity(model, "m") == first
    assert len(calls) == 1  # the config only: the weights' checksum came from the cache
    with torch.no_grad():
        model.pooler.dense.bias[0] += 1.0
    changed = base_identity(model, "m")
    assert changed["weights_sha256"] != first["weights_sha256"] and len(calls) == 3
    assert changed == by_hand(model, "m")
    # the same bytes read as another dtype (same storage, same version) are another base
    bias = model.pooler.dense.bias.requires_grad_(False)
    bias.data = bias.data.view(torch.int32)
    assert base_identity(model, "m")["weights_sha256"] == by_hand(model, "m")["weights_sha256"]


# ------------------------------------------------------------------------------------------ check_base
SAVED = {"name": "org/base-a", "config_sha256": "c" * 64, "weights_sha256": "0123456789abcdef" * 4, "dtype": "float16"}
HERE = {"name": None, "config_sha256": "c" * 64, "weights_sha256": "fedcba9876543210" * 4, "dtype": ""}
BASES = (
    "'org/base-a' (weights 0123456789ab, float16), "
    "but the base model here is 'an unnamed model' (weights fedcba987654)"
)


@pytest.mark.parametrize(
    ("current", "differs"),
    [
        (HERE, "weights"),
        ({**SAVED, "name": None, "config_sha256": "d" * 64, "dtype": None}, "config"),
        ({**HERE, "config_sha256": "d" * 64}, "weights and config"),
    ],
)
def test_another_base_is_refused_naming_both_and_what_differs(
    current: dict[str, Any], differs: str, caplog: pytest.LogCaptureFixture
) -> None:
    weights = current["weights_sha256"][:12]
    described = BASES.replace("fedcba987654", weights)
    message = f"adapter 'x' was saved on base model {described}: their {differs} differ"
    with pytest.raises(ValueError) as refused:
        check_base(SAVED, current, "adapter 'x'")
    assert str(refused.value) == f"{message}; pass allow_other_base=True (CLI: --allow-other-base) to use it anyway"
    with caplog.at_level(logging.WARNING, logger="adapter_fusion.manifest"):
        check_base(SAVED, current, "adapter 'x'", allow_other_base=True)
    assert [r.getMessage() for r in caplog.records] == [f"{message}; using it anyway (allow_other_base)"]


def test_the_same_base_or_no_record_passes() -> None:
    check_base(SAVED, {**SAVED, "name": "renamed", "dtype": "float32"}, "adapter")  # name and dtype: not compared
    check_base(None, HERE, "adapter")


# ------------------------------------------------------------------------------------------ file_sha256
def test_file_sha256_is_the_sha256_of_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    data = bytes(range(256)) * ((3 << 20) // 256) + b"tail"  # three 1 MiB blocks and a few bytes
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------ verify_artefact
def _edit_config(directory: Path) -> Path:
    (directory / "adapter_config.json").write_text((directory / "adapter_config.json").read_text() + " ")
    return directory / "adapter_config.json"


def _remove_head(directory: Path) -> Path:
    (directory / "head.safetensors").unlink()
    return directory / "head.safetensors"


def _add_file(directory: Path) -> Path:
    (directory / "notes.txt").write_text("added")
    return directory / "notes.txt"


def _unlist_config(directory: Path) -> Path:
    manifest = json.loads((directory / "manifest.json").read_text())
    del manifest["files"]["adapter_config.json"]
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory / "manifest.json"


def _remove_manifest(directory: Path) -> Path:
    (directory / "manifest.json").unlink()
    return directory / "manifest.json"


@pytest.mark.parametrize(
    ("change", "problems", "error"),
    [
        (_edit_config, ["{path} changed after the adapter was saved (checksum mismatch)"], ValueError),
        (_remove_head, ["{path} is missing (listed in the adapter's manifest)"], FileNotFoundError),
        (_add_file, ["{path} was added after the adapter was saved (not in its manifest)"], ValueError),
        (
            _unlist_config,
            [
                "{path} does not list adapter_config.json",
                "{config} was added after the adapter was saved (not in its manifest)",
            ],
            ValueError,
        ),
        (_remove_manifest, ["{path} is missing (the adapter was saved with one)"], ValueError),
    ],
)
def test_a_changed_artefact_is_refused_or_loaded_with_a_warning(
    saved: Path, change: Callable[[Path], Path], problems: list[str], error: type, caplog: pytest.LogCaptureFixture
) -> None:
    path = change(saved)
    expected = [p.format(path=path, config=saved / "adapter_config.json") for p in problems]
    with pytest.raises(error) as refused:
        verify_artefact(saved, "adapter")
    hint = "; pass allow_modified=True (CLI: --allow-modified) to load it anyway"
    assert type(refused.value) is error and str(refused.value) == expected[0] + hint
    with caplog.at_level(logging.WARNING, logger="adapter_fusion.manifest"):
        result = verify_artefact(saved, "adapter", allow_modified=True)
    assert [r.getMessage() for r in caplog.records] == [f"{p}; loading it anyway (allow_modified)" for p in expected]
    if change is _remove_manifest:
        assert result is None
    else:
        assert result == json.loads((saved / "manifest.json").read_text())


def test_an_artefact_of_another_kind_is_refused(saved: Path) -> None:
    with pytest.raises(ValueError) as refused:
        verify_artefact(saved, "fusion")
    assert str(refused.value) == f"{saved} holds a saved adapter, not a saved fusion"


def test_a_legacy_artefact_is_noted_once(saved: Path, caplog: pytest.LogCaptureFixture) -> None:
    (saved / "manifest.json").unlink()
    config = json.loads((saved / "adapter_config.json").read_text())
    del config["format_version"]  # saved before manifests existed
    (saved / "adapter_config.json").write_text(json.dumps(config))
    with caplog.at_level(logging.WARNING, logger="adapter_fusion.manifest"):
        assert verify_artefact(saved, "adapter") is None
        assert verify_artefact(saved / ".." / saved.name, "adapter") is None  # the same directory, spelled otherwise
    assert [r.getMessage() for r in caplog.records] == [
        f"adapter at {saved} was saved before artefacts had manifests: its files are unverified"
    ]


# ------------------------------------------------------------------------------------------ install_adapter
CONFIG = AdapterConfig(placement="houlsby", bottleneck_size=4, layers=(1,))
HEAD = HeadConfig(head_type="classification", num_labels=3)


def _weights(module: torch.nn.Module, value: float) -> dict[str, torch.Tensor]:
    return {k: torch.full_like(v, value) for k, v in module.state_dict().items()}


@pytest.fixture
def bert(make_model: Callable) -> AdapterModel:
    return adapter_model(make_model, "bert", seed=0)


def _reference_weights(make_model: Callable) -> tuple[dict[str, torch.Tensor], Callable]:
    """Weights of the right keys and shapes for ``CONFIG`` (0.25) and for any head (0.5)."""
    reference = adapter_model(make_model, "bert", seed=0)
    reference.add_adapter("probe", CONFIG)
    return _weights(reference.adapters.adapters["probe"], 0.25), lambda head: _weights(head, 0.5)


def test_install_loads_exactly_these_weights_and_activates_by_default(
    bert: AdapterModel, make_model: Callable
) -> None:
    weights, head_weights = _reference_weights(make_model)
    assert install_adapter(bert, "task", CONFIG, weights, HEAD, head_weights) == "task"
    assert bert.adapters.active == ("task",) and bert.active_head == "task"
    for key, tensor in bert.adapters.adapters["task"].state_dict().items():
        assert torch.equal(tensor, weights[key])
    assert all(torch.equal(t, torch.full_like(t, 0.5)) for t in bert.heads["task"].state_dict().values())
    install_adapter(bert, "quiet", CONFIG, weights, HEAD, head_weights, activate=False)
    assert bert.adapters.active == ("task",) and bert.active_head == "task"


def test_a_failed_install_names_its_source_and_leaves_the_model_as_it_was(
    bert: AdapterModel, make_model: Callable
) -> None:
    weights, _ = _reference_weights(make_model)
    before = set(bert.state_dict())
    with pytest.raises(ValueError, match=r"^head at src/dir does not fit this model: missing keys \['"):
        install_adapter(bert, "task", CONFIG, weights, HEAD, None, where="src/dir")  # a head needs its weights
    shrunk = dict(list(weights.items())[1:])
    with pytest.raises(ValueError, match=r"^adapter at  does not fit this model: missing keys \['"):
        install_adapter(bert, "task", CONFIG, shrunk)
    with pytest.raises(ValueError, match=r"^adapter at src/dir does not fit this model"):
        install_adapter(bert, "task", CONFIG, shrunk, where="src/dir")
    assert set(bert.state_dict()) == before and "task" not in bert.heads and bert.adapters.active == ()


def test_load_exact_names_at_most_five_missing_and_five_unexpected_keys() -> None:
    module = torch.nn.Sequential(*(torch.nn.Linear(1, 1, bias=False) for _ in range(7)))
    expected = sorted(module.state_dict())
    with pytest.raises(ValueError) as refused:
        load_exact(module, {f"extra{i}": torch.zeros(1) for i in range(7)}, "thing")
    unexpected = [f"extra{i}" for i in range(5)]
    message = f"thing does not fit this model: missing keys {expected[:5]}, unexpected keys {unexpected}"
    assert str(refused.value) == message
    shape = "thing: weight '0.weight' has shape (2,), the model expects (1, 1)"
    with pytest.raises(ValueError, match=re.escape(shape)):
        load_exact(module, {**_weights(module, 1.0), "0.weight": torch.zeros(2)}, "thing")
