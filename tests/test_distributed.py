"""Training on 2 processes (``torch.distributed.run``, gloo on CPU) ends with the weights of 1 process with the same
global batch (2 x 4 = 1 x 8): adapter, fusion and multi-task training through the command line. The artefacts are
written once (rank 0), the 2-process run logs the per-step losses of the 1-process run (same data order), and a
2-process run resumed from a mid-epoch checkpoint ends where the uninterrupted run ended.

Dropout is off in every run (``tests/ddp_train.py``: a base model saved with dropout 0, every ``nn.Dropout`` set to
p=0, ``--attention-dropout 0``): each process draws its own dropout masks, so no seed makes 2 processes drop what 1
process drops. The 2-process runs share one launch (one import of torch per process); ``--standalone`` lets the
rendezvous take a free port, and a launch that overruns ``TIMEOUT`` is killed with its whole process group.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

import adapter_fusion
from adapter_fusion.cli import main
from adapter_fusion.training.distributed import RankBatches, split_evenly
from adapter_fusion.training.trainer import ModularTrainer

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
from ddp_train import with_no_dropout  # noqa: E402

ATOL = 1e-5
TIMEOUT = 300  # seconds for one 2-process launch (about 20 s on two idle cores; the suite's machine is shared)


def common(env: dict[str, Path], batch_size: int) -> list[str]:
    return [
        "--model", str(env["model"]), "--data-dir", str(env["data"]), "--max-seq-length", "32",
        "--disable-tqdm", "true", "--batch-size", str(batch_size), "--logging-steps", "1",
    ]  # fmt: skip


def adapter_run(env: dict[str, Path], out: Path, batch_size: int, *argv: str) -> list[str]:
    return [
        "train-adapter", "--task", "sst2", "--bottleneck-size", "4", "--output", str(out / "sst2"),
        "--output-dir", str(out / "sst2.runs"), "--max-steps", "6", "--eval-steps", "2", "--save-total-limit", "3",
        "--load-best-model-at-end", "false", *common(env, batch_size), *argv,
    ]  # fmt: skip


def fusion_run(env: dict[str, Path], out: Path, batch_size: int) -> list[str]:
    """Shuffled without length groups (the adapter run has them), so both of the Trainer's samplers are covered."""
    adapters = [str(env["adapters"] / "sst2"), str(env["adapters"] / "rte")]
    return [
        "train-fusion", "--task", "rte", "--adapters", *adapters, "--attention-dropout", "0",
        "--fusion-learning-rate", "0.01", "--output", str(out / "fusion"), "--output-dir", str(out / "fusion.runs"),
        "--max-steps", "4", "--eval-steps", "2", "--group-by-length", "false", *common(env, batch_size),
    ]  # fmt: skip


def multitask_run(env: dict[str, Path], out: Path, batch_size: int) -> list[str]:
    return [
        "train-multitask", "--tasks", "sst2", "rte", "--bottleneck-size", "4", "--sampling", "round_robin",
        "--output", str(out / "mt"), "--output-dir", str(out / "mt.runs"), "--max-steps", "6", "--eval-steps", "3",
        "--adapter-learning-rate", "0.01", "--load-best-model-at-end", "false", *common(env, batch_size),
    ]  # fmt: skip


def launch(plan: list[list[str]], directory: Path) -> None:
    """Run ``plan`` (command lines) on 2 processes; fail with the tail of the log when it fails or overruns."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "plan.json").write_text(json.dumps(plan))
    source = str(Path(adapter_fusion.__file__).resolve().parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))}  # fmt: skip
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "--max_restarts", "0", str(TESTS / "ddp_train.py"), str(directory / "plan.json")]  # fmt: skip
    with open(directory / "launch.log", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            code = process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the launcher and both workers
            process.wait()
            code = None
    tail = (directory / "launch.log").read_text()[-3000:]
    assert code is not None, f"the 2-process launch ran over {TIMEOUT} s and was killed:\n{tail}"
    assert code == 0, f"the 2-process launch exited {code}:\n{tail}"


@pytest.fixture(scope="module")
def env(minilm_tiny_bert: Path, tiny_cli_env: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The tiny model (dropout 0) and data, two adapters to fuse (trained on 1 process), and the weights written by
    1 process (in this process) and by 2 processes (one launch) for each kind of training."""
    root = tmp_path_factory.mktemp("ddp")
    env = {"model": minilm_tiny_bert, "data": tiny_cli_env["data"], "adapters": root / "adapters"}
    one, two = root / "one", root / "two"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ModularTrainer, "__init__", with_no_dropout(ModularTrainer.__init__))
        for task in ("sst2", "rte"):
            argv = adapter_run(env, env["adapters"], 8, "--max-steps", "3")
            argv[argv.index("--task") + 1] = task
            argv[argv.index("--output") + 1] = str(env["adapters"] / task)
            argv[argv.index("--output-dir") + 1] = str(root / f"{task}.runs")
            assert main(argv) == 0
        for run in (adapter_run, fusion_run, multitask_run):
            assert main(run(env, one, 8)) == 0
    launch([run(env, two, 4) for run in (adapter_run, fusion_run, multitask_run)], root / "launch")
    return {**env, "one": one, "two": two, "root": root}


def weights(directory: Path) -> dict[str, torch.Tensor]:
    """Every tensor of every safetensors file under ``directory``, keyed ``file:tensor``."""
    files = sorted(directory.rglob("*.safetensors"))
    return {f"{path.relative_to(directory)}:{key}": value for path in files for key, value in load_file(path).items()}


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert sorted(a) == sorted(b)
    return max(float((a[key] - b[key]).abs().max()) for key in a)


def losses(runs: Path) -> list[float]:
    """The per-step training losses logged in the last checkpoint of ``runs``."""
    last = max(runs.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    history = json.loads((last / "trainer_state.json").read_text())["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry]


def checkpoints(runs: Path) -> dict[int, dict[str, torch.Tensor]]:
    """Step -> the trainable weights saved at that step."""
    return {int(path.name.split("-")[1]): load_file(path / "trainable.safetensors")
            for path in runs.glob("checkpoint-*")}  # fmt: skip


@pytest.mark.parametrize("artefact", ["sst2", "fusion", "mt"])
def test_two_processes_train_the_weights_of_one(env: dict[str, Any], artefact: str) -> None:
    assert max_difference(weights(env["one"] / artefact), weights(env["two"] / artefact)) <= ATOL
    one, two = checkpoints(env["one"] / f"{artefact}.runs"), checkpoints(env["two"] / f"{artefact}.runs")
    assert sorted(one) == sorted(two) and len(one) >= 2
    for step in one:  # every step on the way, not only the end
        assert max_difference(one[step], two[step]) <= ATOL, step
    # not two untrained copies: between its first and last checkpoint training moved the weights far more
    first, last = one[min(one)], one[max(one)]
    assert max_difference(first, last) > 100 * ATOL
    # the same data order: the same loss at every step (rank 0 logs the mean over both processes)
    assert losses(env["two"] / f"{artefact}.runs") == pytest.approx(losses(env["one"] / f"{artefact}.runs"), abs=ATOL)


def test_two_processes_write_each_artefact_once(env: dict[str, Any]) -> None:
    one, two = env["one"], env["two"]
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())  # no stray copies
    for artefact in ("sst2", "fusion", "mt"):
        files = sorted(str(p.relative_to(one / artefact)) for p in (one / artefact).rglob("*"))
        assert sorted(str(p.relative_to(two / artefact)) for p in (two / artefact).rglob("*")) == files
    # both processes trained: each saved its random state in the checkpoints (the only files rank 1 writes)
    assert (two / "sst2.runs" / "checkpoint-6" / "rng_state_1.pth").is_file()


def test_two_processes_resume_from_a_mid_epoch_checkpoint(env: dict[str, Any], tmp_path: Path) -> None:
    # 24 examples, global batch 8: checkpoint-2 is 2 of the epoch's 3 steps in
    (tmp_path / "sst2.runs").mkdir()
    shutil.copytree(env["two"] / "sst2.runs" / "checkpoint-2", tmp_path / "sst2.runs" / "checkpoint-2")
    launch([adapter_run(env, tmp_path, 4, "--resume-from-checkpoint", "last")], tmp_path / "launch")
    assert max_difference(weights(env["two"] / "sst2"), weights(tmp_path / "sst2")) <= ATOL


# --------------------------------------------------------------------------- the pieces, on one process
def test_split_evenly_gives_every_row_once_and_every_process_a_row() -> None:
    rows = list(range(7))
    parts = [split_evenly(rows, 2, rank) for rank in range(2)]
    assert parts == [[0, 1, 2, 3], [4, 5, 6]]
    assert [split_evenly(list(range(8)), 2, rank) for rank in range(2)] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert [split_evenly([5], 2, rank) for rank in range(2)] == [[5], [5]]  # one row: both processes take it


def test_rank_batches_split_the_global_batches_of_one_stream(tiny_cli_env: dict[str, Path]) -> None:
    from adapter_fusion.tasks.multitask_data import MultiTaskBatches, TaskSampler

    features = {"a": [{"x": i} for i in range(12)], "b": [{"x": 100 + i} for i in range(8)]}
    collators = {task: (lambda rows: {"x": [row["x"] for row in rows]}) for task in features}

    def stream(batch_size: int) -> MultiTaskBatches:
        sampler = TaskSampler({t: len(f) for t, f in features.items()}, "proportional", None, seed=3)
        return MultiTaskBatches(features, collators, batch_size, sampler, {t: {"head": t} for t in features}, 3)

    whole = list(RankBatches(stream(4), 1, 0))
    shards = [list(RankBatches(stream(2), 2, rank)) for rank in range(2)]
    assert len(whole) == len(shards[0]) == len(shards[1]) == len(stream(4))
    for batch, first, second in zip(whole, *shards):
        assert batch["head"] == first["head"] == second["head"]
        assert batch["x"] == first["x"] + second["x"]

