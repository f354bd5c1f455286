"""Fuzz: bad config values, keys and sections are refused with one clear error (issue: NaN passed validation,
misspelled keys, unknown sections and another method's options were silently ignored, sizes were clamped).

Every float field of every config is found from the dataclasses, so fields added later are covered too."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest

import adapter_fusion.cli  # noqa: F401  (imports every config class)
from adapter_fusion.adapters import AdapterConfig
from adapter_fusion.cli import main
from adapter_fusion.config import JsonConfig
from adapter_fusion.fusion import FusionConfig
from adapter_fusion.training.config import TrainingConfig


def all_configs() -> list[type[JsonConfig]]:
    found, todo = [], list(JsonConfig.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.startswith("adapter_fusion."):
            found.append(cls)
    return sorted(found, key=lambda c: c.__name__)


def float_fields() -> list[tuple[type[JsonConfig], str]]:
    return [
        (cls, field.name)
        for cls in all_configs()
        for field in dataclasses.fields(cls)
        if "float" in str(field.type)
    ]


def test_the_configs_are_found() -> None:
    names = {cls.__name__ for cls in all_configs()}
    assert {"AdapterConfig", "FusionConfig", "TrainingConfig", "ModelConfig", "HeadConfig"} <= names
    assert len(float_fields()) >= 15


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize(("cls", "field"), float_fields(), ids=lambda x: getattr(x, "__name__", x))
def test_no_float_field_takes_nan_or_inf(cls: type[JsonConfig], field: str, value: float) -> None:
    annotation = str(next(f.type for f in dataclasses.fields(cls) if f.name == field))
    given = (1.0, value) if "tuple" in annotation else value
    extra: dict[str, Any] = {"learnable_weights": False} if field == "fixed_weights" else {}
    if cls.__name__ == "MultiTaskConfig" and field == "temperature":
        extra["sampling"] = "temperature"
    with pytest.raises(ValueError, match=rf"{field} must be a finite number; got"):
        cls(**{field: given, **extra})


def test_unknown_keyword_arguments_suggest_the_field() -> None:
    with pytest.raises(TypeError, match=r"keyword argument 'reduction_factr'; did you mean 'reduction_factor'"):
        AdapterConfig(reduction_factr=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"'num_attention_head'; did you mean 'num_attention_heads'"):
        FusionConfig(num_attention_head=2)  # type: ignore[call-arg]


def test_hand_written_dicts_refuse_unknown_keys_and_saved_ones_warn() -> None:
    with pytest.raises(ValueError, match=r"AdapterConfig: unknown key 'scalling'; did you mean 'scaling'"):
        AdapterConfig.from_dict({"scalling": 2.0})
    saved = {**AdapterConfig().to_dict(), "from_a_newer_version": 1}
    with pytest.warns(UserWarning, match="from_a_newer_version"):
        assert AdapterConfig.from_dict(saved) == AdapterConfig()


def test_sizes_out_of_range_are_refused_not_clamped() -> None:
    with pytest.raises(ValueError, match=r"reduction_factor=1000.0 gives a bottleneck of 32 / 1000.0 < 1 .*\(0, 32\]"):
        AdapterConfig(reduction_factor=1000.0).bottleneck_for(32)
    assert AdapterConfig(reduction_factor=32.0).bottleneck_for(32) == 1
    with pytest.raises(ValueError, match="give bottleneck_size or reduction_factor, not both"):
        AdapterConfig(bottleneck_size=8, reduction_factor=4.0)
    with pytest.raises(ValueError, match="residual=False does not apply to placement='parallel'"):
        AdapterConfig(placement="parallel", residual=False)


def test_inapplicable_fields_come_from_the_method_registry() -> None:
    assert set(FusionConfig(fusion_method="weighted").inapplicable_fields()) == {
        "num_attention_heads", "attention_dropout", "value_initialization", "value_regularization",
        "gate_activation", "gate_bias", "top_k", "routing", "load_balancing",
    }  # fmt: skip
    assert "num_attention_heads" not in FusionConfig().inapplicable_fields()
    assert TrainingConfig().inapplicable_fields() == {}


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    return code, err[0]


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Configs must be refused before any model loads."""
    import adapter_fusion.training.adapter_trainer as adapter_trainer
    import adapter_fusion.training.fusion_trainer as fusion_trainer

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a trainer was built from an invalid config")

    monkeypatch.setattr(adapter_trainer, "AdapterTrainer", refuse)
    monkeypatch.setattr(fusion_trainer, "FusionTrainer", refuse)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--scaling", "nan"], "scaling must be a finite number; got nan"),
        (["--dropout", "inf"], "dropout must be a finite number; got inf"),
        (["--adapter-learning-rate", "nan"], "adapter_learning_rate must be a finite number; got nan"),
        (["--warmup-ratio", "nan"], "warmup_ratio must be a finite number; got nan"),
        (["--max-train-minutes", "inf"], "max_train_minutes must be a finite number; got inf"),
        (["--bottleneck-size", "8", "--reduction-factor", "4"], "give bottleneck_size or reduction_factor"),
        (["--placement", "parallel", "--residual", "false"], "residual=False does not apply"),
        (["--dropout", "1.0"], "dropout must be a number in [0, 1); got 1.0"),
        (["--layers", "0", "0"], "layers must be distinct; got [0, 0]"),
        (["--seed", "-1"], "seed must be >= 0; got -1"),
        (["--seed", str(2**32)], "seed must be in [0, 4294967295]"),
        (["--batch-size", str(10**20)], "batch_size must be at most 9223372036854775807 (a 64-bit integer); got 1000"),
        (["--eval-steps", str(2**63)], "eval_steps must be at most 9223372036854775807"),
    ],
)
def test_cli_refuses_bad_adapter_values(
    argv: list[str], message: str, no_training: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, line = run(["train-adapter", "--task", "sst2", "--output", str(tmp_path / "a"), *argv], capsys)
    assert code == 2 and line.startswith("adapter-fusion train-adapter: error: ") and message in line


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--method", "weighted", "--num-attention-heads", "2"],
         "--num-attention-heads=2 does not apply: only fusion_method='attention' reads it; got fusion_method='weigh"),
        (["--method", "attention", "--gate-activation", "softmax"], "--gate-activation='softmax' does not apply"),
        (["--method", "gating", "--weight-sharing", "shared"], "only fusion_method='weighted' reads it"),
        (["--temperature", "nan"], "temperature must be a finite number; got nan"),
    ],
)  # fmt: skip
def test_cli_refuses_options_of_another_fusion_method(
    argv: list[str], message: str, no_training: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, line = run(["train-fusion", "--task", "sst2", "--adapters", str(tmp_path), *argv], capsys)
    assert code == 2 and message in line


@pytest.mark.parametrize(
    ("text", "suffix", "message"),
    [
        ("reduction_factr: 2\n", "yaml", "unknown key 'reduction_factr'; did you mean 'reduction_factor'?"),
        ("adapter:\n  reduction_factor: 2\n", "yaml", "unknown section 'adapter'"),
        ("bottleneck_adapter:\n  scalling: 2\n", "yaml", "section 'bottleneck_adapter': unknown key 'scalling'; did"),
        ("fusion:\n  temperature: 2\n", "yaml", "unknown section 'fusion'"),
        ("training: 3\n", "yaml", "section 'training' must be a mapping of fields; got 3"),
        ("a: [1,\n", "yaml", "invalid YAML at line 2, column 1"),
        ("scaling: .nan\n", "yaml", "scaling must be a finite number; got nan"),
        ('{"batch_size": 4,}', "json", "invalid JSON at line 1, column 18"),
        ('{"training": {"batch_sise": 4}}', "json", "did you mean 'batch_size'?"),
        ("\udcff", "yaml", "is not UTF-8 text"),
        ("layers: 1\n", "yaml", "layers must be a non-empty sequence of layer indices or None; got 1"),
        ("scaling: 1.0\nscaling: 8.0\n", "yaml", "line 2, column 1: key 'scaling' is given twice (first at line 1)"),
        ("training:\n  batch_size: 4\n  batch_size: 8\n", "yaml", "line 3, column 3: key 'batch_size' is given twice"),
        ('{"scaling": 1.0, "scaling": 8.0}', "json", "key 'scaling' is given twice in one object"),
        ('{"training": {"seed": 1, "seed": 2}}', "json", "key 'seed' is given twice in one object"),
    ],
)
def test_config_files_refuse_unknown_keys_sections_and_syntax_errors(
    text: str, suffix: str, message: str, no_training: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / f"config.{suffix}"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    code, line = run(["train-adapter", "--task", "sst2", "--config", str(path)], capsys)
    assert code == 2 and message in line, line


def test_a_config_directory_is_refused(no_training: None, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, line = run(["train-adapter", "--task", "sst2", "--config", str(tmp_path)], capsys)
    assert code == 2 and f"config file {tmp_path} is a directory" in line


def test_config_file_options_of_another_method_are_refused(
    no_training: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "fusion.json"
    path.write_text(json.dumps({"fusion": {"fusion_method": "gating", "value_regularization": 0.5}}))
    code, line = run(["train-fusion", "--task", "sst2", "--adapters", str(tmp_path), "--config", str(path)], capsys)
    assert code == 2 and "fusion.value_regularization (config file)=0.5 does not apply" in line
