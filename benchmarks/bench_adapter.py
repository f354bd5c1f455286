"""Speed and memory cost of one bottleneck adapter, as ratios against a baseline measured in the same run.

What it measures (all on the MiniLM geometry: the bundled all-MiniLM-L6-v2, BERT, 6 layers, hidden 384,
batch 32 x 128 random token ids with a full attention mask, by default):

1. ``forward_ratio_one_adapter``: inference time (``eval()``, ``torch.no_grad``) of an ``AdapterModel`` with one
   active adapter whose weights are random (a "trained-looking" adapter, not the zero-initialised identity one)
   divided by the time of the bare Hugging Face model (``load_base_model``, no hooks). A diagnostic row times
   the same ``AdapterModel`` with its adapters disabled (the hook overhead alone).
   Goal: <= 1.05.
2. ``train_step_ratio_adapter_vs_full``: time of one training step (forward, backward, ``AdamW.step``,
   ``zero_grad``) with the base frozen and only the adapter and a classification head trainable, divided by the
   time of the same step in full fine-tuning (``freeze_base(False)``, everything trainable, AdamW).
   Goal: <= 0.7.
3. Peak memory of adapter training vs full fine-tuning, each in its own fresh subprocess (this script run with
   ``--memory-worker adapter|full``), read from ``/proc/self/status``:

   * ``memory_ratio_total_peak``: peak RSS of the whole process (``VmHWM``: Python, torch, the model, the
     optimizer state, the activations).
   * ``memory_ratio_training``: the memory that training adds on top of the loaded model: peak RSS during
     ``--memory-steps`` training steps minus the RSS after the model, optimizer and batch are built and before
     the first step (the high-water mark is reset in between through ``/proc/self/clear_refs``).

   Goal: ``memory_ratio_training`` (and ``memory_ratio_tensors`` below) <= 0.7: memory above the loaded model,
   because the fixed cost of the process (the Python interpreter and torch's libraries, several hundred MiB) is
   the same for both variants and would hide the difference adapters make; the total-peak ratio is printed
   beside it.

   RSS counts what glibc's malloc keeps after ``free`` as well as live tensors; its dynamic mmap threshold lets
   freed activation buffers fragment the heap and adds a few hundred MiB to both variants (which pulls the
   ratio towards 1). The subprocesses inherit the environment, so ``MALLOC_MMAP_THRESHOLD_=131072`` shows the
   allocator-independent picture more closely; the settings in use are printed.

   * ``memory_ratio_tensors``: the peak of the bytes held by live torch tensors during the same training steps
     (activations kept for backward, gradients, optimizer state), above what was allocated before the first
     step, from torch's own allocation records (``torch.profiler`` with ``profile_memory=True``: every
     allocation and free of the CPU allocator, summed in time order). This is what
     ``torch.cuda.max_memory_allocated`` reports on a GPU, and it does not depend on the C allocator, so it is
     the same from run to run. Each variant runs once more for it, in its own fresh subprocess, after the RSS
     rounds (the profiler's own records would otherwise count in the RSS).

   Both training ratios are compared with the goal and printed with PASS/MISS.

How the numbers are taken: the machine may be small and shared, so the compared variants are measured
interleaved (one call of each per repeat, in an order that rotates from repeat to repeat) after a warm-up; each
ratio is the median over repeats of the per-repeat ratio (variant / baseline from the same repeat), and the table
shows the median, the 25th-75th percentile and the minimum of each variant's times.

Run it (from the repository root, with the package installed)::

    python benchmarks/bench_adapter.py                   # full run: ~10 min on 2 busy CPU cores
    python benchmarks/bench_adapter.py --quick           # smoke test: tiny shapes and counts, ~30 s
    python benchmarks/bench_adapter.py --threads 8 --batch-size 32 --seq-len 128 --repeats 15 --steps 1
    python benchmarks/bench_adapter.py --json results.json   # also write the results as JSON

``main(argv)`` returns the results as a dict, so a test can call ``main(["--quick"])``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import transformers
from timing import load_average, paired_ratio, print_times, time_interleaved
from torch import nn

from adapter_fusion.adapters import AdapterConfig
from adapter_fusion.models import AdapterModel, default_model_path, load_base_model

ADAPTER = "bench"
GOALS = {
    "forward_ratio_one_adapter": 1.05,
    "train_step_ratio_adapter_vs_full": 0.7,
    "memory_ratio_training": 0.7,
    "memory_ratio_tensors": 0.7,
}
FULL_DEFAULTS = dict(batch_size=32, seq_len=128, repeats=15, warmup=2, steps=1, memory_steps=3, memory_rounds=2)
QUICK_DEFAULTS = dict(batch_size=2, seq_len=16, repeats=2, warmup=1, steps=1, memory_steps=1, memory_rounds=1)


# --------------------------------------------------------------------------------------------- arguments
def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--model", default=None, help="model path or Hub id (default: the bundled all-MiniLM-L6-v2)")
    parser.add_argument(
        "--threads", type=int, default=default_threads(), help="torch.set_num_threads (default: cores)"
    )
    parser.add_argument("--batch-size", type=int, default=None, help=f"default {FULL_DEFAULTS['batch_size']}")
    parser.add_argument("--seq-len", type=int, default=None, help=f"default {FULL_DEFAULTS['seq_len']}")
    parser.add_argument(
        "--repeats", type=int, default=None, help=f"timed repeats per variant (default {FULL_DEFAULTS['repeats']})"
    )
    parser.add_argument(
        "--warmup", type=int, default=None, help=f"untimed calls per variant first (default {FULL_DEFAULTS['warmup']})"
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help=f"calls timed together in one repeat (default {FULL_DEFAULTS['steps']})",
    )
    parser.add_argument(
        "--memory-steps",
        type=int,
        default=None,
        help=f"training steps per memory subprocess (default {FULL_DEFAULTS['memory_steps']})",
    )
    parser.add_argument(
        "--memory-rounds",
        type=int,
        default=None,
        help=f"fresh subprocesses per variant, alternating; the lowest peak is kept "
        f"(default {FULL_DEFAULTS['memory_rounds']})",
    )
    parser.add_argument(
        "--bottleneck", type=int, default=None, help="adapter bottleneck size (default: AdapterConfig's, hidden/16)"
    )
    parser.add_argument(
        "--only", choices=("forward", "train", "memory"), action="append", help="run only these parts (repeatable)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: tiny shapes and counts (explicit flags still win)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-worker", choices=("adapter", "full"), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--memory-probe", choices=("rss", "tensors"), default="rss", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    defaults = QUICK_DEFAULTS if args.quick else FULL_DEFAULTS
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for key in ("threads", "batch_size", "seq_len", "repeats", "steps", "memory_steps", "memory_rounds"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1; got {getattr(args, key)}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0; got {args.warmup}")
    args.model = args.model or default_model_path()
    args.only = set(args.only or ("forward", "train", "memory"))
    return args


# --------------------------------------------------------------------------------------------- models and data
def make_batch(args: argparse.Namespace, vocab_size: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(args.seed)
    shape = (args.batch_size, args.seq_len)
    return {
        "input_ids": torch.randint(0, vocab_size, shape, generator=generator),
        "attention_mask": torch.ones(shape, dtype=torch.long),
        "labels": torch.randint(0, 2, (args.batch_size,), generator=generator),
    }


def adapter_config(args: argparse.Namespace) -> AdapterConfig:
    return AdapterConfig(bottleneck_size=args.bottleneck, initialization="bert")


def build_adapter_model(args: argparse.Namespace) -> AdapterModel:
    """``AdapterModel`` + one active adapter with random ("trained-looking") weights + a classification head."""
    torch.manual_seed(args.seed)
    model = AdapterModel.from_pretrained(args.model)
    model.add_adapter(ADAPTER, adapter_config(args))
    with torch.no_grad():  # random biases too: a trained adapter has no zeros in it
        for parameter in model.adapters.adapters[ADAPTER].parameters():
            parameter.normal_(0.0, 0.02)
    model.add_classification_head(ADAPTER, num_labels=2)
    return model


def build_full_model(args: argparse.Namespace) -> AdapterModel:
    """``AdapterModel`` with a classification head and no adapter; every parameter trainable."""
    torch.manual_seed(args.seed)
    model = AdapterModel.from_pretrained(args.model)
    model.add_classification_head("full", num_labels=2)
    model.freeze_base(False)
    return model


def trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def train_step_fn(model: AdapterModel, batch: dict[str, torch.Tensor], lr: float) -> Callable[[], None]:
    model.train()
    optimizer = torch.optim.AdamW(trainable(model), lr=lr)

    def step() -> None:
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def setup_training(args: argparse.Namespace, variant: str) -> tuple[AdapterModel, Callable[[], None]]:
    if variant == "adapter":
        model = build_adapter_model(args)
        model.train_adapter(ADAPTER)
        lr = 1e-4
    else:
        model = build_full_model(args)
        lr = 2e-5
    batch = make_batch(args, model.config.vocab_size)
    return model, train_step_fn(model, batch, lr)


# --------------------------------------------------------------------------------------------- timing
def bench_forward(args: argparse.Namespace) -> dict[str, Any]:
    bare, _ = load_base_model(args.model)
    model = build_adapter_model(args)
    bare.eval()
    model.eval()
    batch = make_batch(args, model.config.vocab_size)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    def run_bare() -> None:
        bare(**inputs)

    def run_adapter() -> None:
        model(**inputs)

    def run_disabled() -> None:
        with model.adapters.disable():
            model(**inputs)

    with torch.no_grad():
        # the adapter must change the hidden states, or we would be timing an identity
        with_adapter = model.encode(**inputs).last_hidden_state
        without = bare(**inputs).last_hidden_state
        difference = (with_adapter - without).abs().max().item()
        if difference == 0.0:
            raise RuntimeError("the adapter left the hidden states unchanged: it is not active")
        times = time_interleaved(
            {"bare model": run_bare, "adapters disabled (hooks only)": run_disabled, "one adapter": run_adapter},
            repeats=args.repeats,
            warmup=args.warmup,
            steps=args.steps,
        )
    return {
        "times": times,
        "forward_ratio_one_adapter": paired_ratio(times, "one adapter", "bare model"),
        "forward_ratio_hooks_only": paired_ratio(times, "adapters disabled (hooks only)", "bare model"),
        "adapter_output_max_abs_change": difference,
    }


def bench_train(args: argparse.Namespace) -> dict[str, Any]:
    full_model, full_step = setup_training(args, "full")
    adapter_model, adapter_step = setup_training(args, "adapter")
    times = time_interleaved(
        {"full fine-tuning": full_step, "adapter training": adapter_step},
        repeats=args.repeats,
        warmup=args.warmup,
        steps=args.steps,
    )
    return {
        "times": times,
        "train_step_ratio_adapter_vs_full": paired_ratio(times, "adapter training", "full fine-tuning"),
        "trainable_parameters": {
            "full fine-tuning": full_model.trainable_parameters(),
            "adapter training": adapter_model.trainable_parameters(),
        },
    }


# --------------------------------------------------------------------------------------------- memory
def read_status_kib() -> dict[str, int]:
    text = Path("/proc/self/status").read_text()
    return {key: int(re.search(rf"^{key}:\s+(\d+)", text, re.M).group(1)) for key in ("VmRSS", "VmHWM")}


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False if that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_tensor_bytes(run: Callable[[], None]) -> int:
    """Peak, during ``run()``, of the bytes held by the torch tensors allocated inside it, from the CPU
    allocator's records in ``torch.profiler`` (tensors that existed before are not in the records)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    # (time, record order, bytes): allocations are positive, frees negative; CPU records only
    records = sorted(
        (event.start_ns(), index, event.nbytes())
        for index, event in enumerate(prof.profiler.kineto_results.events())
        if event.name() == "[memory]" and str(event.device_type()).endswith("CPU")
    )
    live = peak = 0
    for _, _, nbytes in records:
        live += nbytes
        peak = max(peak, live)
    return peak


def memory_worker(args: argparse.Namespace) -> dict[str, Any]:
    """Runs inside a fresh subprocess: build one variant, train ``--memory-steps`` steps, report RSS in MiB
    (``--memory-probe rss``) or the peak of live tensor bytes (``--memory-probe tensors``)."""
    model, step = setup_training(args, args.memory_worker)
    gc.collect()
    if args.memory_probe == "tensors":

        def train() -> None:
            for _ in range(args.memory_steps):
                step()

        return {
            "variant": args.memory_worker,
            "trainable_parameters": model.trainable_parameters(),
            "tensor_peak_mib": peak_tensor_bytes(train) / 2**20,
        }
    before = read_status_kib()
    can_reset = reset_peak()
    for _ in range(args.memory_steps):
        step()
    after = read_status_kib()
    if not can_reset:  # fall back on the process peak (may include a transient peak while loading)
        after["VmHWM"] = max(after["VmHWM"], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    mib = 1 / 1024
    return {
        "variant": args.memory_worker,
        "trainable_parameters": model.trainable_parameters(),
        "rss_loaded_mib": before["VmRSS"] * mib,
        "peak_total_mib": max(before["VmHWM"], after["VmHWM"]) * mib,
        "peak_during_training_mib": after["VmHWM"] * mib,
        "training_mib": (after["VmHWM"] - before["VmRSS"]) * mib,
        "peak_reset": can_reset,
    }


def run_memory_worker(args: argparse.Namespace, variant: str, probe: str = "rss") -> dict[str, Any]:
    command = [
        sys.executable, str(Path(__file__).resolve()), "--memory-worker", variant, "--memory-probe", probe,
        "--model", args.model, "--threads", str(args.threads), "--batch-size", str(args.batch_size),
        "--seq-len", str(args.seq_len), "--memory-steps", str(args.memory_steps), "--seed", str(args.seed),
    ]  # fmt: skip
    if args.bottleneck is not None:
        command += ["--bottleneck", str(args.bottleneck)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"memory worker {variant!r} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def bench_memory(args: argparse.Namespace) -> dict[str, Any]:
    # one fresh subprocess per variant and round, alternating the order; the lowest peak of each is kept
    # (RSS hardly depends on machine load, but the allocator's behaviour can differ from run to run)
    runs: dict[str, list[dict[str, Any]]] = {"full": [], "adapter": []}
    for round_index in range(args.memory_rounds):
        for variant in ("full", "adapter") if round_index % 2 == 0 else ("adapter", "full"):
            runs[variant].append(run_memory_worker(args, variant))
    best = {variant: min(readings, key=lambda r: r["peak_total_mib"]) for variant, readings in runs.items()}
    for variant in best:  # live tensor bytes: deterministic, one fresh subprocess each
        best[variant]["tensor_peak_mib"] = run_memory_worker(args, variant, "tensors")["tensor_peak_mib"]
    full, adapter = best["full"], best["adapter"]
    return {
        "workers": best,
        "all_readings": runs,
        "memory_ratio_total_peak": adapter["peak_total_mib"] / full["peak_total_mib"],
        "memory_ratio_training": adapter["training_mib"] / full["training_mib"],
        "memory_ratio_tensors": adapter["tensor_peak_mib"] / full["tensor_peak_mib"],
    }


# --------------------------------------------------------------------------------------------- report
def print_environment(args: argparse.Namespace) -> None:
    print("== environment")
    print(f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}")
    print(f"threads {torch.get_num_threads()} (cores available {default_threads()}), {platform.machine()}")
    print(f"model {args.model}")
    malloc = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}
    if malloc:
        print(f"allocator settings {malloc}")
    load = load_average()
    if load is not None:
        print(f"load average (1 min) before the run: {load:.2f}")
        if load >= 0.5 * args.threads:
            print(
                "WARNING: other processes are using the CPU. With as many OpenMP threads as cores every small op "
                "waits for descheduled threads, which inflates the cost of the adapter's extra small ops; "
                "prefer a quiet machine (or compare with --threads 1)."
            )
    print(
        f"batch {args.batch_size} x {args.seq_len} tokens, repeats {args.repeats}, warmup {args.warmup}, "
        f"steps per repeat {args.steps}, memory steps {args.memory_steps} x {args.memory_rounds} rounds"
        + ("  [QUICK]" if args.quick else "")
    )


def print_memory(memory: dict[str, Any]) -> None:
    print("\n== training memory (fresh subprocess per variant; RSS and live torch tensors, in MiB)")
    print(f"{'variant':<20}{'trainable':>12}{'loaded':>10}{'peak':>10}{'training':>10}{'tensors':>10}")
    for variant in ("full", "adapter"):
        r = memory["workers"][variant]
        print(
            f"{variant:<20}{r['trainable_parameters']:>12,}{r['rss_loaded_mib']:>10.0f}"
            f"{r['peak_total_mib']:>10.0f}{r['training_mib']:>10.0f}{r['tensor_peak_mib']:>10.0f}"
        )
    print("(loaded / peak / training: RSS; tensors: peak bytes of live torch tensors allocated by the steps)")


def ratio_line(name: str, value: float, note: str = "") -> str:
    goal = GOALS.get(name)
    verdict = f"(goal <= {goal})" if goal is not None else "(no goal)"
    if goal is not None:
        verdict += " PASS" if value <= goal else " MISS"
    return f"{name}: {value:.3f} {verdict}{note}"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    if args.memory_worker:
        result = memory_worker(args)
        print(json.dumps(result))
        return result

    started = time.perf_counter()
    print_environment(args)
    results: dict[str, Any] = {"args": {k: str(v) if isinstance(v, (Path, set)) else v for k, v in vars(args).items()}}
    if "forward" in args.only:
        results["forward"] = bench_forward(args)
        print_times("inference forward (eval, no_grad)", results["forward"]["times"], "bare model")
    if "train" in args.only:
        results["train"] = bench_train(args)
        print_times(
            "training step (forward + backward + AdamW step + zero_grad)",
            results["train"]["times"],
            "full fine-tuning",
        )
    if "memory" in args.only:
        results["memory"] = bench_memory(args)
        print_memory(results["memory"])

    print("\n== ratios (median over repeats of the per-repeat ratio)")
    lines = []
    if "forward" in results:
        lines.append(ratio_line("forward_ratio_one_adapter", results["forward"]["forward_ratio_one_adapter"]))
        lines.append(ratio_line("forward_ratio_hooks_only", results["forward"]["forward_ratio_hooks_only"]))
    if "train" in results:
        lines.append(
            ratio_line("train_step_ratio_adapter_vs_full", results["train"]["train_step_ratio_adapter_vs_full"])
        )
    if "memory" in results:
        lines.append(ratio_line("memory_ratio_training", results["memory"]["memory_ratio_training"],
                                "  (RSS: peak minus RSS of the loaded model)"))  # fmt: skip
        lines.append(ratio_line("memory_ratio_tensors", results["memory"]["memory_ratio_tensors"],
                                "  (peak live torch tensor bytes, as torch.cuda.max_memory_allocated)"))  # fmt: skip
        lines.append(ratio_line("memory_ratio_total_peak", results["memory"]["memory_ratio_total_peak"],
                                "  (whole-process peak RSS, incl. interpreter and libraries)"))  # fmt: skip
    print("\n".join(lines))
    if args.quick:
        print("(--quick: tiny shapes and counts; a smoke test of the script, the ratios mean nothing)")
    results["ratios"] = {
        name: value
        for part in ("forward", "train", "memory")
        for name, value in results.get(part, {}).items()
        if "_ratio_" in name
    }
    results["elapsed_s"] = time.perf_counter() - started
    results["load_average_after"] = load_after = load_average()
    print(f"\nelapsed {results['elapsed_s']:.1f} s, load average (1 min) after the run: {load_after or 0.0:.2f}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return results


if __name__ == "__main__":
    main()
