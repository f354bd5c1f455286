"""AdapterHub ``adapters`` artefacts: import (outputs equal AdapterHub 1.3.0's recorded ones), export, refusals.

The fixtures in ``tests/fixtures/adapterhub`` were written by AdapterHub itself (``make_fixtures.py`` there, run
with adapters 1.3.0 and transformers 4.57.6); no AdapterHub is needed here.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from adapter_fusion.cli import main
from adapter_fusion.interop.adapterhub import load_bin
from adapter_fusion.interop.adapterhub_export import export_adapterhub
from adapter_fusion.models import AdapterModel, load_adapter, save_adapter
from adapter_fusion.models.fusion_model import FusionModel

FIXTURES = Path(__file__).parent / "fixtures" / "adapterhub"
FAMILIES = ("bert", "roberta", "gpt2")
ATOL = 1e-5


def expected(family: str) -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURES / family / "expected.safetensors"))


def batch_of(values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {"input_ids": values["input_ids"], "attention_mask": values["attention_mask"]}


def base(family: str) -> AdapterModel:
    return AdapterModel.from_pretrained(str(FIXTURES / family / "base")).eval()


def hidden(model: AdapterModel, values: dict[str, torch.Tensor], names: list[str] | None = None) -> torch.Tensor:
    with torch.no_grad():
        return model.encode(adapter_names=names, **batch_of(values)).last_hidden_state


def assert_equal(got: torch.Tensor, want: torch.Tensor) -> None:
    torch.testing.assert_close(got, want, rtol=0.0, atol=ATOL)


PLACEMENTS = {  # AdapterHub case -> (our placement, original_ln_before)
    "seq_bn": ("pfeiffer", True),
    "seq_bn_no_ln": ("pfeiffer", False),
    "double_seq_bn": ("houlsby", False),
    "par_bn": ("parallel", False),
}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("case", list(PLACEMENTS))
def test_single_adapter_equals_adapterhub(family: str, case: str) -> None:
    values, model = expected(family), base(family)
    assert_equal(hidden(model, values), values["base"])
    if case == "par_bn" and family == "gpt2":
        with pytest.raises(ValueError, match="parallel adapter reads the residual stream.*supported there"):
            load_adapter(model, FIXTURES / family / case)
        assert model.adapters.list_adapters() == []
        return
    name = load_adapter(model, FIXTURES / family / case)
    config = model.adapters.configs[name]
    assert (config.placement, config.original_ln_before) == PLACEMENTS[case]
    out = hidden(model, values, [name])
    assert_equal(out, values[case])
    assert (out - values["base"]).abs().max() > 0.1  # the adapter changes the function it is compared on


@pytest.mark.parametrize("family", FAMILIES)
def test_fusion_equals_adapterhub(family: str) -> None:
    values = expected(family)
    model = FusionModel.from_adapterhub(FIXTURES / family / "fusion" / "a,b", model=str(FIXTURES / family / "base"))
    assert model.fusion is not None and model.fusion.adapter_names == ("a", "b")
    fuse = model.fusion
    with torch.no_grad(), fuse.record_weights() as weights:
        out = model.encode(**batch_of(values)).last_hidden_state
    assert_equal(out, values["fusion"])
    for key, probabilities in weights.items():
        layer, _ = key.split("_")
        assert_equal(probabilities, values[f"fusion.attentions.{layer}.output_adapter"])
    assert len(weights) == 2
    # the same directory through load_fusion, and the adapters alone through from_adapters (a new fusion)
    reloaded = FusionModel.load_fusion(FIXTURES / family / "fusion" / "a,b", model=str(FIXTURES / family / "base"))
    assert_equal(hidden(reloaded, values), values["fusion"])
    fresh = FusionModel.from_adapters(
        [FIXTURES / family / "fusion" / "a", FIXTURES / family / "fusion" / "b"], model=str(FIXTURES / family / "base")
    )
    assert fresh.fusion is not None and fresh.fusion.adapter_names == ("a", "b")


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_head_equals_adapterhub(family: str) -> None:
    values, model = expected(family), base(family)
    name = load_adapter(model, FIXTURES / family / "head")
    assert model.head_config(name).label_names == ("neg", "neu", "pos")
    with torch.no_grad():
        logits = model(**batch_of(values)).logits
    assert_equal(logits, values["head"])


def test_export_round_trip_and_layout(tmp_path: Path) -> None:
    """AdapterHub -> ours (saved by our save path) -> AdapterHub layout -> ours again: same outputs; the exported
    keys are exactly the ones AdapterHub wrote."""
    values, model = expected("bert"), base("bert")
    load_adapter(model, FIXTURES / "bert" / "head")
    save_adapter(model, "head", tmp_path / "ours", head="head")
    export_adapterhub(tmp_path / "ours", tmp_path / "ah")
    written = load_file(str(tmp_path / "ah" / "adapter.safetensors"))
    original = load_bin(FIXTURES / "bert" / "head" / "pytorch_adapter.bin")
    assert set(written) == set(original)
    assert set(load_file(str(tmp_path / "ah" / "model_head.safetensors"))) == set(
        load_bin(FIXTURES / "bert" / "head" / "pytorch_model_head.bin")
    )
    config = json.loads((tmp_path / "ah" / "adapter_config.json").read_text())["config"]
    recorded = json.loads((FIXTURES / "bert" / "head" / "adapter_config.json").read_text())["config"]
    assert {k: config[k] for k in recorded} == {**recorded, "reduction_factor": 4.0}
    again = base("bert")
    load_adapter(again, tmp_path / "ah")
    with torch.no_grad():
        assert_equal(again(**batch_of(values)).logits, values["head"])


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_fusion_export_round_trip_folds_the_value_bias(family: str, tmp_path: Path) -> None:
    values = expected(family)
    model = FusionModel.from_adapterhub(FIXTURES / family / "fusion" / "a,b", model=str(FIXTURES / family / "base"))
    assert model.fusion is not None
    with torch.no_grad():
        for layer in model.fusion.fusion_layers().values():
            layer.value.bias.normal_(0.0, 0.3)  # trained fusions have one; AdapterHub's value has none
    want = hidden(model, values)
    model.save_fusion(tmp_path / "ours")
    assert main(["export", "--format", "adapterhub", str(tmp_path / "ours"), str(tmp_path / "ah")]) == 0
    assert sorted(p.name for p in (tmp_path / "ah").iterdir()) == ["a", "a,b", "b"]
    again = FusionModel.from_adapterhub(tmp_path / "ah" / "a,b", model=str(FIXTURES / family / "base"))
    # exact in exact arithmetic; the folded float32 bias rounds differently (measured: up to 2.4e-5)
    torch.testing.assert_close(hidden(again, values), want, rtol=0.0, atol=1e-4)


def test_cli_import_goes_through_our_save_path(tmp_path: Path) -> None:
    values = expected("roberta")
    assert main(["import", "--format", "adapterhub", str(FIXTURES / "roberta" / "seq_bn"), str(tmp_path / "a"),
                 "--model", str(FIXTURES / "roberta" / "base")]) == 0  # fmt: skip
    assert (tmp_path / "a" / "adapter.safetensors").is_file()
    model = base("roberta")
    name = load_adapter(model, tmp_path / "a")
    assert_equal(hidden(model, values, [name]), values["seq_bn"])
    assert main(["import", "--format", "adapterhub", str(FIXTURES / "roberta" / "fusion" / "a,b"),
                 str(tmp_path / "f"), "--model", str(FIXTURES / "roberta" / "base")]) == 0  # fmt: skip
    assert_equal(hidden(FusionModel.load_fusion(tmp_path / "f"), values), values["fusion"])


@pytest.mark.parametrize(("method", "pattern"), [("prefix_tuning", "'prefix_tuning'"), ("lora", "'lora'")])
def test_unsupported_method_is_named(method: str, pattern: str, tmp_path: Path) -> None:
    model = base("bert")
    with pytest.raises(ValueError, match=f"AdapterHub method {pattern} cannot be imported; supported: bottleneck"):
        load_adapter(model, FIXTURES / "bert" / method)
    assert model.adapters.list_adapters() == []


def test_unsupported_option_is_named(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "bert" / "seq_bn", tmp_path / "gated")
    info = json.loads((tmp_path / "gated" / "adapter_config.json").read_text())
    info["config"]["use_gating"] = True
    (tmp_path / "gated" / "adapter_config.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match=r"option use_gating=True has no equivalent here \(supported: use_gating=F"):
        load_adapter(base("bert"), tmp_path / "gated")


class _Custom:
    """Not a tensor: torch.load(weights_only=True) refuses to rebuild it."""

    def __init__(self) -> None:
        self.value = 1


class _Touch:
    """Unpickling this would create a file: the proof that no pickle code runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def _adapter_dir_with(tmp_path: Path, payload: object) -> Path:
    directory = tmp_path / "evil"
    directory.mkdir()
    shutil.copy(FIXTURES / "bert" / "seq_bn" / "adapter_config.json", directory / "adapter_config.json")
    with open(directory / "pytorch_adapter.bin", "wb") as handle:
        pickle.dump(payload, handle, protocol=2)  # a plain pickle: torch.load reads it too
    return directory


def test_bin_that_needs_full_unpickling_is_refused(tmp_path: Path) -> None:
    directory = _adapter_dir_with(tmp_path, {"seq_bn": _Custom()})
    with pytest.raises(ValueError, match=r"needs full unpickling.*weights_only=True\) refused it"):
        load_adapter(base("bert"), directory)


def test_pickle_that_would_run_code_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    directory = _adapter_dir_with(tmp_path, {"x": _Touch(marker)})
    with pytest.raises(ValueError, match="needs full unpickling"):
        load_adapter(base("bert"), directory)
    assert not marker.exists()
    pickle.loads(pickle.dumps(_Touch(marker)))  # the payload is live: plain unpickling creates the marker
    assert marker.exists()
