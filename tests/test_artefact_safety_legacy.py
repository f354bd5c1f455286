"""Artefacts saved before the manifest existed (``tests/fixtures/legacy``, written by ``make_legacy_fixtures.py``
with the code of that time) still load and give exactly the outputs recorded when they were saved."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from adapter_fusion.models import AdapterModel, load_adapter
from adapter_fusion.models.fusion_model import load_fusion
from conftest import build_tiny_model

LEGACY = Path(__file__).parent / "fixtures" / "legacy"
REFERENCE = json.loads((LEGACY / "reference.json").read_text())


def reference_inputs() -> dict[str, torch.Tensor]:
    return {key: torch.tensor(value) for key, value in REFERENCE["inputs"].items()}


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tiny_bert_legacy")
    build_tiny_model("bert", seed=0).save_pretrained(directory)
    return directory


def recorded(actual: torch.Tensor, reference: list) -> None:
    """Equal to the recorded outputs: bit for bit on the transformers 5.x that recorded them; within float32
    rounding (1e-6) on 4.57, whose BERT kernels differ in the last bits on the same weights."""
    torch.testing.assert_close(actual, torch.tensor(reference, dtype=actual.dtype), rtol=0, atol=1e-6)


def test_legacy_adapter_loads_with_the_recorded_outputs(tmp_path: Path) -> None:
    directory = shutil.copytree(LEGACY / "adapter", tmp_path / "adapter")  # the fixture itself stays untouched
    model = AdapterModel(build_tiny_model("bert", seed=0)).eval()
    assert load_adapter(model, directory) == "sst2"
    with torch.no_grad():
        logits = model(**reference_inputs()).logits
    recorded(logits, REFERENCE["adapter_logits"])
    assert model.head_config("sst2").label_names == ("negative", "positive")


def test_legacy_fusion_loads_with_the_recorded_outputs(tmp_path: Path, tiny_bert_dir: Path) -> None:
    directory = shutil.copytree(LEGACY / "fusion", tmp_path / "fusion")
    model = load_fusion(directory, model=str(tiny_bert_dir))
    assert model.fusion.adapter_names == ("a", "b") and list(model.heads) == ["rte"]
    with torch.no_grad():
        output = model(**reference_inputs(), return_fusion_weights=True)
    recorded(output.logits, REFERENCE["fusion_logits"])
    assert output.fusion_weights.keys() == REFERENCE["fusion_weights"].keys()
    for key, weights in output.fusion_weights.items():
        recorded(weights, REFERENCE["fusion_weights"][key])
