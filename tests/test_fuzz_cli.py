"""Fuzz: every failure of the command line ends in one line on stderr and the right exit code: 2 for bad input, 1
for internal errors (``--debug`` shows the traceback), 130 for Ctrl-C after a checkpoint was saved (issue: raw
tracebacks for a truncated weights file, a missing model, a too-long max_seq_length, a read-only output, a
metrics file naming a directory, Ctrl-C and resuming with another adapter shape; predict printed bare NaN and had
no way to pass sentence pairs).

Runs are in-process (``main([...])``) on a tiny random BERT; one test sends a real SIGINT to a subprocess."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers

from adapter_fusion.cli import main


def train_args(env: dict[str, Path], out: Path, *argv: str, task: str = "sst2") -> list[str]:
    return [
        "train-adapter", "--task", task, "--model", str(env["model"]), "--data-dir", str(env["data"]),
        "--output", str(out / task), "--output-dir", str(out / f"{task}.runs"), "--max-steps", "4",
        "--batch-size", "4", "--max-seq-length", "32", "--bottleneck-size", "4", "--disable-tqdm", "true",
        "--eval-steps", "2", "--save-total-limit", "3", "--load-best-model-at-end", "false", *argv,
    ]  # fmt: skip


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """Our one line, which must be the last line on stderr (library progress bars may come before it)."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith("adapter-fusion")]
    assert len(ours) == 1 and lines[-1] == ours[0], lines
    return ours[0]


@pytest.fixture(scope="module")
def adapters(tiny_cli_env: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("adapters")
    for task in ("sst2", "rte"):
        assert main(train_args(tiny_cli_env, out, task=task)) == 0
    return {"sst2": out / "sst2", "rte": out / "rte"}


# --------------------------------------------------------------------------- bad paths and values: exit 2
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-seq-length", "100"], "max_seq_length=100 is more than base model"),
        (["--model", "no/such/model"], "model 'no/such/model': no such local directory"),
        (["--metrics-file", "{tmp}"], "--metrics-file '{tmp}' is a directory"),
        (["--output", "{tmp}/file/adapter"], "'{tmp}/file' is a file, so the directory cannot be made"),
        (["--reduction-factor", "1000", "--bottleneck-size", "0"], "bottleneck_size must be > 0; got 0"),
        (["--layers", "7"], "adapter layers [7] out of range: the model has layers 0..1"),
    ],
)
def test_bad_training_input_exits_2_in_one_line_and_writes_nothing(
    argv: list[str], message: str, tiny_cli_env: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "file").write_text("not a directory")
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in argv]
    code = main(train_args(tiny_cli_env, tmp_path / "out") + argv)
    line = error_line(capsys)
    assert code == 2 and line.startswith("adapter-fusion train-adapter: error: ")
    assert message.replace("{tmp}", str(tmp_path)) in line, line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--reduction-factr", "8"], "arguments: --reduction-factr 8; did you mean '--reduction-factor'?"),
        (["--scal=2"], "arguments: --scal=2; did you mean '--scaling'?"),  # never an abbreviation
        (["--batch-size", "x"], "argument --batch-size: invalid int value: 'x'"),
    ],
)
def test_argument_errors_are_one_line_with_a_did_you_mean(
    argv: list[str], message: str, tiny_cli_env: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """argparse's own errors too: one line (no usage block) naming the option, exit 2, nothing written."""
    with pytest.raises(SystemExit) as exited:
        main(train_args(tiny_cli_env, tmp_path / "out") + argv)
    assert exited.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("adapter-fusion train-adapter: error: "), lines
    assert lines[0].endswith(message)
    assert not (tmp_path / "out").exists()


def test_an_unwritable_output_is_refused_before_training(
    tiny_cli_env: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import adapter_fusion.cli_checks as checks

    def read_only(*args: Any, **kwargs: Any) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(checks.tempfile, "mkstemp", read_only)  # root ignores chmod; the probe is what matters
    monkeypatch.setattr(transformers.Trainer, "train", lambda *a, **k: pytest.fail("training started"))
    assert main(train_args(tiny_cli_env, tmp_path / "out")) == 2
    assert f"--output '{tmp_path / 'out' / 'sst2'}': cannot write in '{tmp_path}' (Permission denied)" in error_line(
        capsys
    )


def test_truncated_weights_exit_2(adapters: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(adapters["sst2"], broken)
    weights = broken / "adapter.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert main(["predict", "--adapter", str(broken), "a fine film"]) == 2
    assert "error:" in error_line(capsys)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--output-dir", "{sst2}"], "--output-dir {sst2} is a saved adapter"),
        (["--output-dir", "{sst2}/runs"], "--output-dir {sst2}/runs lies inside {sst2}, which is a saved adapter"),
        (["--metrics-file", "{sst2}/manifest.json"], "--metrics-file {sst2}/manifest.json lies inside {sst2}"),
        (["--metrics-file", "{out}/sst2/metrics.json"], "and --metrics-file {out}/sst2/metrics.json overlap"),
    ],
)
def test_paths_written_beside_the_artefact_never_land_in_a_saved_one(
    argv: list[str], message: str, adapters: dict[str, Path], tiny_cli_env: dict[str, Path], tmp_path: Path,
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Checkpoints or metrics written into a saved adapter break its manifest (it no longer loads) or replace one
    of its files; into the new artefact, they make it fail its own check. Refused before training."""
    saved = tmp_path / "saved"
    shutil.copytree(adapters["sst2"], saved)
    before = {p: p.read_bytes() for p in saved.rglob("*") if p.is_file()}
    names = {"sst2": str(saved), "out": str(tmp_path / "out")}
    monkeypatch.setattr(transformers.Trainer, "train", lambda *a, **k: pytest.fail("training started"))
    assert main(train_args(tiny_cli_env, tmp_path / "out") + [arg.format(**names) for arg in argv]) == 2
    assert message.format(**names) in error_line(capsys)
    assert {p: p.read_bytes() for p in saved.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "out" / "sst2").exists()


def test_evaluate_never_writes_its_metrics_into_the_adapter(
    adapters: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    saved = tmp_path / "saved"
    shutil.copytree(adapters["sst2"], saved)
    config = (saved / "adapter_config.json").read_bytes()
    assert main(["evaluate", "--adapter", str(saved), "--metrics-file", str(saved / "adapter_config.json")]) == 2
    assert f"--metrics-file {saved / 'adapter_config.json'} lies inside {saved}, which is a saved adapter" in (
        error_line(capsys)
    )
    assert (saved / "adapter_config.json").read_bytes() == config


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("{fusion}", "output {fusion} is, contains or lies inside {fusion}, an input of this run"),
        ("{thesis}", "output {thesis} is a directory that is not a saved fusion (it holds chapter1.tex)"),
        ("{thesis}/chapter1.tex", "--output '{thesis}/chapter1.tex' is a file, not a directory"),
        (None, "--task, --fusion DIR and --adapter DIR are required"),
    ],
)
def test_extend_fusion_checks_its_output_before_loading_anything(
    output: str | None, message: str, tiny_cli_env: dict[str, Path], tmp_path: Path,
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """extend-fusion had no output check of its own: it loaded and trained, then refused (or, for missing
    options, exited 1 without the command's prefix)."""
    import adapter_fusion.training.extension_trainer as extension_trainer

    monkeypatch.setattr(extension_trainer, "ExtensionTrainer", lambda *a, **k: pytest.fail("a model was loaded"))
    names = {"fusion": str(tmp_path / "fusion"), "thesis": str(tmp_path / "thesis")}
    (tmp_path / "fusion").mkdir()
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "chapter1.tex").write_text("\\chapter{One}")
    argv = ["extend-fusion", "--fusion", names["fusion"], "--task", "rte", "--model", str(tiny_cli_env["model"])]
    if output is not None:
        argv += ["--adapter", str(tmp_path / "rte"), "--output", output.format(**names)]
    assert main(argv) == 2
    assert error_line(capsys).startswith("adapter-fusion extend-fusion: error: " + message.format(**names))
    assert (tmp_path / "thesis" / "chapter1.tex").read_text() == "\\chapter{One}"


@pytest.mark.parametrize(
    ("source", "output", "message"),
    [
        ("head", "{thesis}", "output {thesis} is a directory that is not a saved adapter (it holds chapter1.tex)"),
        ("head", "{thesis}/chapter1.tex", "output {thesis}/chapter1.tex is an existing file"),
        ("fusion/a,b", "{source}/out", "output {source}/out is, contains or lies inside {source}, an input"),
    ],
)
def test_import_checks_its_output_before_loading_anything(
    source: str, output: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """import refused a bad output only at the save, after loading the base model (progress bars on stderr)."""
    from adapter_fusion.models import AdapterModel
    from adapter_fusion.models.fusion_model import FusionModel

    for cls, method in ((AdapterModel, "from_pretrained"), (FusionModel, "from_adapterhub")):
        monkeypatch.setattr(cls, method, lambda *a, **k: pytest.fail("a model was loaded"))
    fixtures = Path(__file__).parent / "fixtures" / "adapterhub" / "bert"
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "chapter1.tex").write_text("one")
    names = {"thesis": str(tmp_path / "thesis"), "source": str(fixtures / source)}
    assert main(["import", "--format", "adapterhub", str(fixtures / source), output.format(**names)]) == 2
    assert error_line(capsys).startswith("adapter-fusion import: error: " + message.format(**names))
    assert (tmp_path / "thesis" / "chapter1.tex").read_text() == "one"


# --------------------------------------------------------------------------- predict: pairs and valid JSON
def predictions(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_predict_takes_sentence_pairs_on_the_command_line_and_from_files(
    adapters: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    rte = str(adapters["rte"])
    assert main(["predict", "--adapter", rte, "a man walks", "--pair", "a man moves"]) == 0
    [record] = predictions(capsys)
    assert record["text"] == "a man walks" and record["text_pair"] == "a man moves"
    assert record["label"] in ("entailment", "not_entailment")
    lines = tmp_path / "pairs.tsv"
    lines.write_text('a man walks\ta man moves\n\n{"text": "a man walks", "text_pair": "a man moves"}\n')
    assert main(["predict", "--adapter", rte, "--input", str(lines)]) == 0
    first, second = predictions(capsys)
    assert first == second == record


@pytest.mark.parametrize(
    ("argv", "file_text", "message"),
    [
        (["a man walks"], None, "task 'rte' is a sentence-pair task: give each text its second sentence"),
        (["a", "b", "--pair", "c"], None, "give one --pair per text: got 2 texts and 1 --pair values"),
        ([], "a man walks\n", "pairs.txt:1: a sentence-pair task needs 'first<TAB>second'"),
        ([], "one\ttwo\tthree\n", "pairs.txt:1: a sentence-pair task needs 'first<TAB>second' (exactly one tab"),
        (["a", "--pair", " "], None, "text_pairs must be non-empty strings"),
        (["", "--pair", "a man moves"], None, "classification inputs must be non-empty strings; got ['']"),
    ],
)
def test_predict_refuses_single_sentences_for_a_pair_task(
    argv: list[str], file_text: str | None, message: str, adapters: dict[str, Path], tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:  # fmt: skip
    if file_text is not None:
        (tmp_path / "pairs.txt").write_text(file_text)
        argv = [*argv, "--input", str(tmp_path / "pairs.txt")]
    assert main(["predict", "--adapter", str(adapters["rte"]), *argv]) == 2
    assert message in error_line(capsys)


def test_pairs_are_refused_for_a_single_sentence_task(adapters: dict[str, Path], capsys: Any) -> None:
    from adapter_fusion.inference import FusionPipeline

    assert main(["predict", "--adapter", str(adapters["sst2"]), "fine", "--pair", "film"]) == 2
    assert "task 'sst2' takes single sentences; text_pairs does not apply" in error_line(capsys)
    with pytest.raises(ValueError, match="takes single sentences"):
        FusionPipeline.from_pretrained(adapters["sst2"]).predict("fine", text_pairs="film")


def test_an_adapter_that_predicts_nan_is_an_error_not_bare_nan(
    adapters: dict[str, Path], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from adapter_fusion.inference import FusionPipeline

    pipeline = FusionPipeline.from_pretrained(adapters["sst2"])
    with torch.no_grad():
        next(iter(pipeline.model.adapters.parameters())).fill_(math.nan)
    with pytest.raises(ValueError, match=r"produced a non-finite score \(nan\)"):
        pipeline.predict("a fine film")
    monkeypatch.setattr(FusionPipeline, "from_pretrained", classmethod(lambda cls, *a, **k: pipeline))
    assert main(["predict", "--adapter", str(adapters["sst2"]), "a fine film"]) == 2
    assert "non-finite score" in error_line(capsys) and capsys.readouterr().out == ""


def test_evaluate_refuses_weights_that_are_not_finite(
    adapters: dict[str, Path], tiny_cli_env: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """NaN logits still have an argmax, so evaluate printed an accuracy for an adapter of NaN weights (exit 0)."""
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(adapters["sst2"], broken)
    tensors = load_file(broken / "adapter.safetensors")
    name = sorted(tensors)[0]
    tensors[name] = torch.full_like(tensors[name], math.nan)
    save_file(tensors, broken / "adapter.safetensors", metadata={"format": "pt"})
    argv = ["evaluate", "--adapter", str(broken), "--data-dir", str(tiny_cli_env["data"]), "--allow-modified"]
    assert main(argv) == 2
    assert "holds NaN or inf values, so any score would be meaningless" in error_line(capsys)
    assert capsys.readouterr().out == ""


# --------------------------------------------------------------------------- internal errors, --debug
def test_internal_errors_exit_1_with_a_hint_and_debug_shows_the_traceback(
    tiny_cli_env: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from adapter_fusion.training.task_trainer import TaskTrainer

    def broken(self: Any, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("an index went astray")

    monkeypatch.setattr(TaskTrainer, "train", broken)
    assert main(train_args(tiny_cli_env, tmp_path)) == 1
    line = error_line(capsys)
    assert line == (
        "adapter-fusion train-adapter: internal error: RuntimeError: an index went astray; run again with --debug "
        "for the traceback"
    )
    assert main(["--debug", *train_args(tiny_cli_env, tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and 'raise RuntimeError("an index went astray")' in err
    assert main([*train_args(tiny_cli_env, tmp_path), "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err


# --------------------------------------------------------------------------- Ctrl-C and resume
class InterruptAt(transformers.TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.step:
            raise KeyboardInterrupt


def test_ctrl_c_saves_a_checkpoint_exits_130_and_resume_needs_the_same_shape(
    tiny_cli_env: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from adapter_fusion.training.task_trainer import TaskTrainer

    normal = TaskTrainer.callbacks
    monkeypatch.setattr(TaskTrainer, "callbacks", lambda self: [*normal(self), InterruptAt(3)])
    assert main(train_args(tiny_cli_env, tmp_path)) == 130
    checkpoint = tmp_path / "sst2.runs" / "checkpoint-3"
    assert error_line(capsys) == (
        f"adapter-fusion train-adapter: interrupted; saved a checkpoint of the last finished step to {checkpoint} "
        "(continue with --resume-from-checkpoint last and the same --output-dir)"
    )
    assert (checkpoint / "trainer_state.json").is_file() and not (tmp_path / "sst2").exists()
    monkeypatch.setattr(TaskTrainer, "callbacks", normal)

    resume = [*train_args(tiny_cli_env, tmp_path), "--resume-from-checkpoint", "last"]
    assert main([*resume, "--bottleneck-size", "8"]) == 2
    line = error_line(capsys)
    assert f"checkpoint {checkpoint} was trained with other shapes" in line
    assert re.search(r"adapters\.\S+ is \[4(, 32)?\] there and \[8(, 32)?\] now", line), line

    assert main(resume) == 0
    assert json.loads((tmp_path / "sst2.runs" / "checkpoint-4" / "trainer_state.json").read_text())["global_step"] == 4


def test_a_real_sigint_exits_130(tiny_cli_env: dict[str, Path], tmp_path: Path) -> None:
    argv = train_args(tiny_cli_env, tmp_path, "--max-steps", "100000", "--eval-steps", "100000")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    # a suite started in the background by a shell inherits SIGINT ignored, and Python then keeps ignoring it:
    # the child gets the default disposition back, as in a terminal
    process = subprocess.Popen(
        [sys.executable, "-m", "adapter_fusion.cli", *argv],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    assert process.stdout is not None
    for line in process.stdout:  # printed just before training starts
        if line.startswith("adapter 'sst2'"):
            break
    # keep draining stdout (the trainer's log lines) so a full pipe never stalls the run
    errors: list[str] = []
    readers = [
        threading.Thread(target=target, daemon=True)
        for target in (process.stdout.read, lambda: errors.append(process.stderr.read()))
    ]  # type: ignore
    for reader in readers:
        reader.start()
    time.sleep(3)
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=180)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    readers[1].join(timeout=30)  # the rest of stderr, up to the child's exit
    err = "".join(errors)
    lines = [line for line in err.splitlines() if line.strip()]
    assert process.returncode == 130, err[-2000:]
    assert lines[-1].startswith("adapter-fusion train-adapter: interrupted"), lines[-3:]
    assert "Traceback" not in err
