"""JSON round-trip and validation of the frozen dataclass configs."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any, ClassVar

import pytest

import adapter_fusion
from adapter_fusion.adapters import AdapterConfig
from adapter_fusion.config import JsonConfig
from adapter_fusion.heads import HeadConfig
from adapter_fusion.training.config import ModelConfig, TrainingConfig

NON_DEFAULT = [
    AdapterConfig(),
    AdapterConfig(bottleneck_size=12, activation="gelu", dropout=0.1, placement="houlsby", residual=False,
                  scaling=4.0, initialization="bert", layers=(0, 2, 5)),
    HeadConfig(),
    HeadConfig(num_labels=3, label_names=("neg", "neu", "pos"), pooling="mean", dropout=0.0, task="sst2"),
    HeadConfig(head_type="regression", num_labels=1, problem_type="regression"),
    TrainingConfig(),
    TrainingConfig(output_dir="x/y", max_steps=7, max_train_minutes=1.5, head_learning_rate=3e-3, eval_steps=5,
                   full_finetune=True, resume_from_checkpoint="last", max_train_examples=10),
    ModelConfig(),
    ModelConfig(model_name_or_path="some/model", max_seq_length=64, pooling="cls"),
]
CLASSES = (AdapterConfig, HeadConfig, TrainingConfig, ModelConfig)


@pytest.mark.parametrize("config", NON_DEFAULT, ids=lambda c: type(c).__name__)
def test_json_round_trip(config: JsonConfig, tmp_path: Path) -> None:
    data = json.loads(config.to_json())
    assert data["config_type"] == type(config).config_type
    assert data["library_version"] == adapter_fusion.__version__
    assert set(data) == {f.name for f in dataclasses.fields(config)} | {"config_type", "library_version"}
    restored = type(config).from_dict(data)
    assert restored == config
    assert restored.to_dict() == config.to_dict()

    path = tmp_path / "sub" / "config.json"
    config.save(path)
    assert type(config).load(path) == config
    assert [p.name for p in path.parent.iterdir()] == ["config.json"]  # no temp file left behind


def test_tuples_survive_json() -> None:
    restored = AdapterConfig.from_dict(json.loads(AdapterConfig(layers=(1, 3)).to_json()))
    assert restored.layers == (1, 3) and isinstance(restored.layers, tuple)
    head = HeadConfig.from_dict(json.loads(HeadConfig(num_labels=2, label_names=("a", "b")).to_json()))
    assert head.label_names == ("a", "b") and isinstance(head.label_names, tuple)
    assert AdapterConfig(layers=[0, 1]).layers == (0, 1)  # type: ignore[arg-type]


def test_configs_are_frozen() -> None:
    config = AdapterConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.placement = "houlsby"  # type: ignore[misc]
    assert config.replace(placement="houlsby").placement == "houlsby" and config.placement == "pfeiffer"


@pytest.mark.parametrize("cls", CLASSES)
def test_unknown_keys_warn_and_are_dropped(cls: type[JsonConfig]) -> None:
    data = cls().to_dict()
    data["from_the_future"] = 1
    with pytest.warns(UserWarning, match=rf"{cls.__name__}.*from_the_future"):
        restored = cls.from_dict(data)
    assert restored == cls()
    assert "from_the_future" not in restored.to_dict()


@pytest.mark.parametrize("cls", CLASSES)
def test_wrong_discriminator_raises(cls: type[JsonConfig]) -> None:
    other = next(c for c in CLASSES if c is not cls)
    with pytest.raises(ValueError, match=rf"{cls.config_type!r}.*config_type={other.config_type!r}"):
        cls.from_dict(other().to_dict())


def test_discriminator_may_be_absent() -> None:
    assert AdapterConfig.from_dict({"placement": "houlsby"}) == AdapterConfig(placement="houlsby")


def test_from_dict_rejects_non_dicts() -> None:
    with pytest.raises(TypeError, match="list"):
        AdapterConfig.from_dict([("placement", "houlsby")])  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True)
class _Required(JsonConfig):
    config_type: ClassVar[str] = "required_test"

    name: str
    size: int
    note: str = ""


def test_missing_required_keys_raise() -> None:
    assert _Required.from_dict({"name": "x", "size": 2}) == _Required("x", 2)
    with pytest.raises(KeyError, match=r"_Required.*\['size'\]"):
        _Required.from_dict({"name": "x"})
    with pytest.raises(KeyError, match=r"\['name', 'size'\]"):
        _Required.from_dict({"config_type": "required_test"})


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.json"):
        AdapterConfig.load(tmp_path / "nope.json")


@pytest.mark.parametrize(
    ("cls", "field", "value", "error"),
    [
        (AdapterConfig, "placement", "middle", ValueError),
        (AdapterConfig, "dropout", -0.1, ValueError),
        (AdapterConfig, "bottleneck_size", True, TypeError),
        (HeadConfig, "head_type", "tagging", ValueError),
        (HeadConfig, "pooling", "max", ValueError),
        (HeadConfig, "num_labels", 0, ValueError),
        (HeadConfig, "problem_type", "multi_label", ValueError),
        (TrainingConfig, "max_steps", 0, ValueError),
        (TrainingConfig, "batch_size", 0, ValueError),
        (TrainingConfig, "batch_size", 8.0, TypeError),
        (TrainingConfig, "adapter_learning_rate", -1e-3, ValueError),
        (TrainingConfig, "head_learning_rate", 0.0, ValueError),
        (TrainingConfig, "warmup_ratio", 1.5, ValueError),
        (TrainingConfig, "weight_decay", -0.01, ValueError),
        (TrainingConfig, "eval_steps", 0, ValueError),
        (TrainingConfig, "save_total_limit", 0, ValueError),
        (TrainingConfig, "max_train_minutes", -5.0, ValueError),
        (ModelConfig, "max_seq_length", 0, ValueError),
        (ModelConfig, "pooling", "max", ValueError),
    ],
)
def test_validation_errors_name_field_and_value(
    cls: type[JsonConfig], field: str, value: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match=f"{field}.*{re.escape(repr(value))}"):
        cls(**{field: value})


def test_head_config_cross_field_checks() -> None:
    with pytest.raises(ValueError, match=r"label_names has 3 names but num_labels is 2"):
        HeadConfig(num_labels=2, label_names=("a", "b", "c"))
    with pytest.raises(ValueError, match="num_labels=2"):
        HeadConfig(problem_type="regression", num_labels=2)


def test_validation_also_runs_on_load() -> None:
    data = AdapterConfig().to_dict()
    data["placement"] = "middle"
    with pytest.raises(ValueError, match="'middle'"):
        AdapterConfig.from_dict(data)


# ------------------------------------------------------------------------------------- adapter placement fields
def test_pfeiffer_default_is_the_papers_adapter_and_houlsby_is_not() -> None:
    """'pfeiffer' defaults to the AdapterFusion paper's adapter (AdapterHub's SeqBnConfig: LayerNorm before);
    'houlsby' and 'parallel' to AdapterHub's DoubleSeqBnConfig / ParBnConfig (none)."""
    assert AdapterConfig().original_ln_before is True
    assert AdapterConfig(placement="houlsby").original_ln_before is False
    assert AdapterConfig(placement="parallel").original_ln_before is False
    assert AdapterConfig().residual_before_ln is True
    # a new placement takes its own default unless the field is given
    assert AdapterConfig().replace(placement="houlsby").original_ln_before is False
    assert AdapterConfig(placement="houlsby").replace(placement="pfeiffer").original_ln_before is True
    assert AdapterConfig().replace(placement="houlsby", original_ln_before=True).original_ln_before is True
    assert AdapterConfig().replace(dropout=0.1).original_ln_before is True


def test_saved_configs_without_the_new_fields_keep_their_meaning() -> None:
    """A config written before original_ln_before existed (it has library_version, not the field) ran without
    the LayerNorm before: it loads that way; a hand-written dict without library_version gets the default."""
    saved = AdapterConfig().to_dict()
    assert saved["original_ln_before"] is True and saved["residual_before_ln"] is True
    old = {k: v for k, v in saved.items() if k not in ("original_ln_before", "residual_before_ln")}
    old["library_version"] = "0.1.0"
    assert AdapterConfig.from_dict(old).original_ln_before is False
    assert AdapterConfig.from_dict(old).residual_before_ln is True
    assert AdapterConfig.from_dict({"placement": "pfeiffer"}).original_ln_before is True
    assert AdapterConfig.from_dict(saved) == AdapterConfig()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"residual_before_ln": "after"}, "residual_before_ln must be True, False or 'post_add'; got 'after'"),
        ({"residual_before_ln": 1}, "residual_before_ln must be True, False or 'post_add'; got 1"),
        ({"original_ln_before": "yes"}, "original_ln_before must be a bool or None; got 'yes'"),
        ({"original_ln_before": False, "residual_before_ln": "post_add"}, "needs|only happens before the adapter"),
        ({"placement": "parallel", "original_ln_before": True}, "apply to sequential placements"),
        ({"placement": "parallel", "residual_before_ln": False}, "apply to sequential placements"),
    ],
)
def test_placement_field_errors(changes: dict[str, Any], message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message if "|" in message else re.escape(message)):
        AdapterConfig(**changes)
