"""Issue 15 point 5: our hand-written CLI reader against jsonargparse, on the same inputs, built from the same
dataclasses (``AdapterConfig``, ``TrainingConfig``). Prints, per input, the last stderr line and exit code of each.

jsonargparse is not a dependency; run in an environment that has it:

    python -m venv /tmp/jap && /tmp/jap/bin/pip install "jsonargparse[signatures]"
    PYTHONPATH=src:$(.venv/bin/python -c 'import site; print(site.getsitepackages()[0])') \
        /tmp/jap/bin/python experiments/cli_parsers.py
"""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
from pathlib import Path

from jsonargparse import ActionConfigFile, ArgumentParser

from adapter_fusion.adapters import AdapterConfig
from adapter_fusion.cli import main
from adapter_fusion.training.config import TrainingConfig

CASES = [
    ("a misspelled option", ["--reduction-factr", "8"], ["--adapter.reduction_factr", "8"]),
    ("an abbreviated option", ["--scal", "2"], ["--adapter.scal", "2"]),
    ("NaN for a float", ["--scaling", "nan"], ["--adapter.scaling", "nan"]),
    ("a bad int", ["--batch-size", "x"], ["--training.batch_size", "x"]),
    ("a misspelled key in a YAML section", ["--config", "{yaml}"], ["--config", "{jyaml}"]),
    ("the option READMEs, cards and scripts use", ["--reduction-factor", "8"], ["--reduction-factor", "8"]),
]


def ours(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(["train-adapter", "--task", "no_such_task", *argv])  # fails after the options are read
        except SystemExit as exited:
            code = int(exited.code or 0)
    lines = err.getvalue().strip().splitlines()
    return code, f"{len(lines)} line(s); last: {lines[-1] if lines else ''}"


def theirs(argv: list[str]) -> tuple[int, str]:
    parser = ArgumentParser(prog="adapter-fusion train-adapter", exit_on_error=True)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_class_arguments(AdapterConfig, "adapter")
    parser.add_class_arguments(TrainingConfig, "training")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args(argv)
            code = 0
        except SystemExit as exited:
            code = int(exited.code or 0)
    lines = err.getvalue().strip().splitlines()
    return code, f"{len(lines)} line(s); last: {lines[-1] if lines else ''}"


def run() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "a.yaml").write_text("bottleneck_adapter:\n  reduction_factr: 8\n")
        (Path(scratch) / "j.yaml").write_text("adapter:\n  reduction_factr: 8\n")
        for what, our_argv, their_argv in CASES:
            fill = {"{yaml}": str(Path(scratch) / "a.yaml"), "{jyaml}": str(Path(scratch) / "j.yaml")}
            our_argv = [fill.get(arg, arg) for arg in our_argv]
            their_argv = [fill.get(arg, arg) for arg in their_argv]
            (our_code, our_text), (their_code, their_text) = ours(our_argv), theirs(their_argv)
            print(f"## {what}\n  ours:         exit {our_code}, {our_text}")
            print(f"  jsonargparse: exit {their_code}, {their_text}")


if __name__ == "__main__":
    sys.exit(run())
