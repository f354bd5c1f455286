"""The ``adapter-fusion`` command line: help from the config docstrings, clean errors for bad values."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest

from adapter_fusion.adapters import AdapterConfig
from adapter_fusion.cli import build_parser, main
from adapter_fusion.cli_args import build_config, field_docs
from adapter_fusion.training.config import ModelConfig, TrainingConfig

SUBCOMMANDS = ("train-adapter", "evaluate", "predict", "list-tasks")


def squash(text: str) -> str:
    """Drop all whitespace, so that argparse's line wrapping doesn't matter."""
    return "".join(text.split())


def run_exit(argv: list[str]) -> Any:
    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code


def test_top_level_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_exit(["--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: adapter-fusion" in out
    for command in SUBCOMMANDS:
        assert command in out


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_subcommand_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_exit([command, "--help"]) == 0
    assert f"usage: adapter-fusion {command}" in capsys.readouterr().out


def test_train_help_comes_from_field_docstrings(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_exit(["train-adapter", "--help"]) == 0
    out = capsys.readouterr().out
    assert "bottleneck" in out and "--bottleneck-size" in out and "--full-finetune" in out
    assert squash("Width of the bottleneck.") in squash(out)
    for cls, skip in ((AdapterConfig, ()), (TrainingConfig, ()), (ModelConfig, ("model_name_or_path",))):
        docs = field_docs(cls)
        for field in (f.name for f in dataclasses.fields(cls)):
            if field in skip:
                continue
            assert docs.get(field), f"{cls.__name__}.{field} has no docstring"
            assert squash(docs[field]) in squash(out), field
            assert f"--{field.replace('_', '-')}" in out
    assert squash("(default: 16.0)") in squash(out)


def test_list_tasks_prints_sst2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list-tasks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    sst2 = [line for line in lines if line.split()[0] == "sst2"]
    assert len(sst2) == 1 and "accuracy" in sst2[0]


def test_only_rank_zero_prints_results(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Under torchrun (``RANK`` set) every process runs the command; only rank 0's results reach stdout, while a
    failure is reported on every rank."""
    monkeypatch.setenv("RANK", "1")
    assert main(["list-tasks"]) == 0 and capsys.readouterr().out == ""
    assert main(["evaluate", "--adapter", "no/such/dir", "--task", "sst2"]) == 2
    assert "error" in capsys.readouterr().err
    monkeypatch.setenv("RANK", "0")
    assert main(["list-tasks"]) == 0 and "sst2" in capsys.readouterr().out
    print("stdout restored")
    assert capsys.readouterr().out == "stdout restored\n"


def test_no_subcommand_or_unknown_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_exit([]) == 2
    assert run_exit(["frobnicate"]) == 2
    assert "frobnicate" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--bottleneck-size", "abc"], "invalid int value: 'abc'"),
        (["--residual", "maybe"], "expected true or false; got 'maybe'"),
        (["--dropout", "lots"], "invalid float value: 'lots'"),
        (["--no-such-flag", "1"], "unrecognized arguments: --no-such-flag"),
    ],
)
def test_unparsable_flag_values(flags: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_exit(["train-adapter", "--task", "sst2", *flags]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--dropout", "2.0"], "dropout must be a number in [0, 1); got 2.0"),
        (["--placement", "middle"], "placement must be one of"),
        (["--batch-size", "0"], "batch_size must be > 0; got 0"),
        (["--pooling", "max"], "pooling must be one of 'cls', 'mean', 'last'; got 'max'"),
    ],
)
def test_invalid_config_values_exit_nonzero_with_message(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import adapter_fusion.training.adapter_trainer as adapter_trainer

    def no_model(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("configs must be validated before any model is loaded")

    monkeypatch.setattr(adapter_trainer, "AdapterTrainer", no_model)
    assert main(["train-adapter", "--task", "sst2", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("adapter-fusion train-adapter: error:")
    assert message in err


def test_missing_task(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train-adapter"]) == 2
    assert "train-adapter: error: --task is required" in capsys.readouterr().err


def test_bad_config_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train-adapter", "--task", "sst2", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml does not exist" in capsys.readouterr().err

    bad_section = tmp_path / "bad.json"
    bad_section.write_text(json.dumps({"bottleneck_adapter": {"bogus": 1}}))
    assert main(["train-adapter", "--task", "sst2", "--config", str(bad_section)]) == 2
    assert "config file section 'bottleneck_adapter': unknown key 'bogus'" in capsys.readouterr().err

    not_a_mapping = tmp_path / "list.yaml"
    not_a_mapping.write_text("- 1\n- 2\n")
    assert main(["train-adapter", "--task", "sst2", "--config", str(not_a_mapping)]) == 2
    assert "must hold a mapping" in capsys.readouterr().err


def test_flags_override_the_config_file(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["train-adapter", "--bottleneck-size", "8", "--layers", "0", "1", "--residual", "false", "--max-steps", "5"]
    )
    file_data = {"placement": "houlsby", "bottleneck_size": 4, "bottleneck_adapter": {"activation": "gelu"},
                 "training": {"batch_size": 4}}
    adapter = build_config(AdapterConfig, file_data, args)
    assert adapter == AdapterConfig(placement="houlsby", bottleneck_size=8, activation="gelu", layers=(0, 1),
                                    residual=False)
    training = build_config(TrainingConfig, file_data, args, output_dir="somewhere", seed=None)
    assert (training.batch_size, training.max_steps, training.output_dir, training.seed) == (4, 5, "somewhere", 42)
    assert build_config(ModelConfig, {}, args, model_name_or_path=None) == ModelConfig()


def test_predict_and_evaluate_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "--adapter", str(tmp_path)]) == 2
    assert "give texts" in capsys.readouterr().err
    assert main(["evaluate", "--adapter", str(tmp_path / "nowhere"), "--task", "sst2"]) == 2
    assert "nowhere does not exist" in capsys.readouterr().err


@pytest.mark.realdata
def test_train_adapter_smoke_on_real_model_and_data(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A few steps of SST-2 on the bundled MiniLM: an adapter directory and finite metrics come out."""
    output = tmp_path / "sst2"
    code = main([
        "train-adapter", "--task", "sst2", "--data-dir", str(data_dir), "--output", str(output),
        "--max-steps", "4", "--batch-size", "8", "--max-train-examples", "64", "--max-eval-examples", "64",
        "--max-seq-length", "32", "--output-dir", str(tmp_path / "runs"), "--disable-tqdm", "true",
        "--metrics-file", str(tmp_path / "metrics.json"),
    ])
    assert code == 0
    assert {p.name for p in output.iterdir()} >= {"adapter_config.json", "adapter.safetensors", "head.safetensors"}
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["global_step"] == 4 and 0.0 <= metrics["accuracy"] <= 1.0
    assert "saved adapter to" in capsys.readouterr().out


def test_predict_inputs_may_be_json_objects() -> None:
    from adapter_fusion.cli_inputs import parse_input

    assert parse_input('{"question": "Who?", "context": "Ann did."}') == {"question": "Who?", "context": "Ann did."}
    assert parse_input("a plain text") == "a plain text"
    with pytest.raises(ValueError, match="does not parse"):
        parse_input('{"question": ')


def test_predict_input_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    from adapter_fusion.cli_inputs import read_predict_inputs

    bad = tmp_path / "inputs.txt"
    bad.write_bytes(b"\xff\xfe not utf-8\n")
    args = argparse.Namespace(texts=[], pair=None, input=str(bad))
    with pytest.raises(ValueError, match=re.escape(
        f"--input {bad} is not UTF-8 text (invalid start byte at byte 0); save it as UTF-8"
    )):  # fmt: skip
        read_predict_inputs(args, pairs=False)
