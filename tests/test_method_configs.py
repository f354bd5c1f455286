"""Each fusion method owns its settings: one config dataclass per method, registered with it. ``FusionConfig``
takes them as keywords (the documented front door), refuses another method's, saves them flat, and the CLI offers
them as flags; a new method needs nothing but its module (here: registered by the test) and its test row."""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Iterator
from typing import Any

import pytest

from adapter_fusion.cli import build_parser
from adapter_fusion.cli_args import field_docs
from adapter_fusion.fusion import FUSION_METHODS, FusionConfig, FusionMethod, FusionPoint, WeightedFusion
from adapter_fusion.fusion.registry import MethodConfig

METHODS = FUSION_METHODS.names()


def test_every_method_registers_a_config_class_with_documented_fields_of_its_own() -> None:
    owners: dict[str, str] = {}
    for name, method in FUSION_METHODS.items():
        assert issubclass(method.config_class, MethodConfig) and method.config_class is not MethodConfig, name
        docs = field_docs(method.config_class)
        for field in dataclasses.fields(method.config_class):
            assert docs.get(field.name), f"{name}: field {field.name} has no docstring (it is the CLI help)"
            assert field.name not in owners, f"{field.name} is a setting of both {owners[field.name]} and {name}"
            owners[field.name] = name
    common = {f.name for f in dataclasses.fields(FusionConfig)}
    assert not common & set(owners), "a method's setting shadows a FusionConfig field"


@pytest.mark.parametrize("method", METHODS)
def test_settings_round_trip_through_the_flat_json(method: str) -> None:
    config_class = FUSION_METHODS.get(method).config_class
    overrides = dict(FUSION_METHODS.get(method).single_adapter_identity)
    config = FusionConfig(fusion_method=method, adapter_names=["a"], **overrides)
    assert type(config.settings) is config_class
    data = config.to_dict()
    assert set(data) - {f.name for f in dataclasses.fields(FusionConfig)} == (
        {"config_type", "library_version"} | {f.name for f in dataclasses.fields(config_class)}
    )
    assert FusionConfig.from_dict(data) == config
    for field in dataclasses.fields(config_class):  # the documented attribute reads
        assert getattr(config, field.name) == getattr(config.settings, field.name)


@pytest.mark.parametrize(("chosen", "other"), list(itertools.permutations(METHODS, 2)))
def test_another_methods_setting_is_refused_naming_the_method(chosen: str, other: str) -> None:
    field = dataclasses.fields(FUSION_METHODS.get(other).config_class)[0]
    value = field.default
    expected = f"{field.name}={value!r} does not apply: only fusion_method='{other}' reads it; got fusion_method="
    with pytest.raises(ValueError, match=re.escape(f"{expected}'{chosen}'")):
        FusionConfig(fusion_method=chosen, **{field.name: value})
    with pytest.raises(AttributeError, match=f"{field.name} is a setting of fusion_method='{other}'"):
        getattr(FusionConfig(fusion_method=chosen), field.name)


def test_a_saved_config_from_before_holds_every_methods_settings_and_loads() -> None:
    legacy = {  # fusion_config.json's "fusion" as written before methods owned their settings
        "config_type": "fusion", "library_version": "0.1.0", "adapter_paths": [], "adapter_names": ["a", "b"],
        "fusion_method": "weighted", "name": "fusion", "fusion_layers": None, "num_attention_heads": 1,
        "attention_dropout": 0.1, "value_initialization": "identity", "value_regularization": 0.01,
        "temperature": 1.0, "temperature_min": 1.0, "temperature_decay": 0.0, "learnable_weights": False,
        "weight_sharing": "per_layer", "weight_initialization": "uniform", "fixed_weights": [1.0, 3.0],
        "gate_activation": "sigmoid", "gate_bias": True, "freeze_adapters_during_fusion": True, "top_k": 2,
        "routing": "token", "load_balancing": 0.01,
    }  # fmt: skip
    config = FusionConfig.from_dict(legacy)
    assert config.settings == FUSION_METHODS.get("weighted").config_class(learnable_weights=False,
                                                                          fixed_weights=(1.0, 3.0))  # fmt: skip
    hand_written = {k: v for k, v in legacy.items() if k != "library_version"}
    with pytest.raises(ValueError, match="num_attention_heads=1 does not apply: only fusion_method='attention'"):
        FusionConfig.from_dict(hand_written)


@dataclasses.dataclass(frozen=True)
class ScaledMeanConfig(MethodConfig):
    """Test method settings."""

    mean_temperature_scale: float = 1.0
    """Test method: a factor on the temperature."""

    def __post_init__(self) -> None:
        if self.mean_temperature_scale <= 0:
            raise ValueError(f"mean_temperature_scale must be > 0; got {self.mean_temperature_scale!r}")


def _build_mean(config: FusionConfig, point: FusionPoint, shared: dict[str, Any]) -> WeightedFusion:
    scale = config.settings_of(ScaledMeanConfig).mean_temperature_scale
    return WeightedFusion(point.hidden_size, point.num_adapters, temperature=config.temperature * scale)


@pytest.fixture
def new_method() -> Iterator[str]:
    """A method defined outside the package, as its own module would: config class, builder, registration."""
    reference = FUSION_METHODS.get("weighted").reference
    FUSION_METHODS.register(
        "scaled_mean", FusionMethod(WeightedFusion, _build_mean, reference, config_class=ScaledMeanConfig,
                                    description="a test method")  # fmt: skip
    )
    try:
        yield "scaled_mean"
    finally:
        FUSION_METHODS._items.pop("scaled_mean")


def test_a_new_method_is_one_module_config_front_door_and_cli_included(new_method: str) -> None:
    config = FusionConfig(fusion_method=new_method, mean_temperature_scale=2.0, temperature=3.0)
    assert FusionConfig.from_dict(config.to_dict()) == config and config.mean_temperature_scale == 2.0
    layer = FUSION_METHODS.get(new_method).build(config, FusionPoint("0_ffn", 8, (0, 1), 2), {})
    assert layer.temperature == 6.0
    with pytest.raises(ValueError, match="mean_temperature_scale=2.0 does not apply"):
        FusionConfig(fusion_method="attention", mean_temperature_scale=2.0)
    help_text = train_fusion_help()
    assert "scaled_mean: a test method" in help_text
    assert "--mean-temperature-scale" in help_text and "Test method: a factor on the temperature" in help_text


def train_fusion_help() -> str:
    """``adapter-fusion train-fusion --help``, on one line."""
    subcommands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    return " ".join(subcommands["train-fusion"].format_help().split())


def test_cli_help_lists_every_registered_method_and_its_settings() -> None:
    help_text = train_fusion_help()
    for name, method in FUSION_METHODS.items():
        assert f"{name}: {method.description}" in help_text
        for field in dataclasses.fields(method.config_class):
            assert f"--{field.name.replace('_', '-')}" in help_text
