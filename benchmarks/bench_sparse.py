"""Speed of sparse top-k fusion over many adapters, as ratios against the bare model measured in the same run.

What it measures (MiniLM geometry by default: the bundled all-MiniLM-L6-v2, BERT, 6 layers, hidden 384; batch
32 x 128 random token ids with a full attention mask; ``torch.set_num_threads(--threads)``, 2 by default):
inference time (``eval()``, ``torch.no_grad``) of the encoder with N = 64 Pfeiffer adapters (reduction factor 16,
random weights) fused by

* ``sparse k=2 token``: ``fusion_method="sparse", top_k=2, routing="token"`` (each token runs 2 adapters);
* ``sparse k=2 example``: the same with ``routing="example"`` (each sequence picks 2, gathered weights);
* ``dense N=64``: every adapter computed, softmax gates (``fusion_method="gating", gate_activation="softmax"``:
  the computation sparse fusion equals at k = N), for comparison;

each divided by the time of the plain Hugging Face model (``load_base_model``, no hooks) in the same repeat.
Goal: sparse k = 2 at N = 64 <= 1.3x the bare model.

Before timing, exactness is checked: sparse fusion with k = N equals the dense gating fusion with the same gate
weights (``torch.testing.assert_close``), and the sparse fusions change the hidden states (they are active).

How the numbers are taken: variants are timed interleaved (one call of each per repeat, in an order that rotates
from repeat to repeat) after a warm-up; each ratio is the median over repeats of the per-repeat ratio (see
``timing.py``). The load average and a small-op latency are printed before and after: the machine may be shared.

Run it (from the repository root, with the package installed)::

    python benchmarks/bench_sparse.py                  # full run
    python benchmarks/bench_sparse.py --quick          # smoke test: tiny shapes, N = 8
    python benchmarks/bench_sparse.py --adapters 64 --top-k 2 --repeats 9 --json sparse.json

``main(argv)`` returns the results as a dict.
"""

from __future__ import annotations

import argparse
import json
import platform
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import transformers
from timing import Variant, load_average, op_latency_ms, paired_ratio, print_times, time_interleaved

GOAL = 1.3
BARE = "bare model"
FULL_DEFAULTS = dict(batch_size=32, seq_len=128, repeats=7, warmup=1, adapters=64)
QUICK_DEFAULTS = dict(batch_size=2, seq_len=16, repeats=2, warmup=1, adapters=8)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model path or Hub id (default: the bundled all-MiniLM-L6-v2)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--batch-size", type=int, default=None, help=f"default {FULL_DEFAULTS['batch_size']}")
    parser.add_argument("--seq-len", type=int, default=None, help=f"default {FULL_DEFAULTS['seq_len']}")
    parser.add_argument("--repeats", type=int, default=None, help=f"default {FULL_DEFAULTS['repeats']}")
    parser.add_argument("--warmup", type=int, default=None, help=f"default {FULL_DEFAULTS['warmup']}")
    parser.add_argument("--adapters", type=int, default=None, help=f"N (default {FULL_DEFAULTS['adapters']})")
    parser.add_argument("--top-k", type=int, default=2, help="k (default 2)")
    parser.add_argument("--skip-dense", action="store_true", help="don't time the dense N-adapter fusion")
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny shapes (explicit flags still win)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for key, value in (QUICK_DEFAULTS if args.quick else FULL_DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for key in ("threads", "batch_size", "seq_len", "repeats", "adapters", "top_k"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1; got {getattr(args, key)}")
    if args.top_k > args.adapters:
        parser.error(f"--top-k must be <= --adapters ({args.adapters}); got {args.top_k}")
    if args.model is None:
        from adapter_fusion.models import default_model_path

        args.model = default_model_path()
    return args


def build(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    """The bare model, an ``AdapterModel`` with N random Pfeiffer adapters, and the fusions to time (inactive)."""
    from adapter_fusion.adapters import AdapterConfig
    from adapter_fusion.fusion import FusionConfig, add_fusion
    from adapter_fusion.models import AdapterModel, load_base_model

    bare, _ = load_base_model(args.model)
    torch.manual_seed(args.seed)
    model = AdapterModel.from_pretrained(args.model)
    names = tuple(f"a{i}" for i in range(args.adapters))
    with torch.no_grad():
        for name in names:
            model.add_adapter(name, AdapterConfig(placement="pfeiffer", reduction_factor=16), activate=False)
            for parameter in model.adapters.adapters[name].parameters():
                parameter.normal_(0.0, 0.02)  # a trained adapter is neither the identity nor has zero biases
    k = args.top_k
    configs = {
        f"sparse k={k} token": FusionConfig(adapter_names=names, fusion_method="sparse", top_k=k, routing="token"),
        f"sparse k={k} example": FusionConfig(adapter_names=names, fusion_method="sparse", top_k=k, routing="example"),
    }
    if not args.skip_dense:
        configs[f"dense N={args.adapters}"] = FusionConfig(
            adapter_names=names, fusion_method="gating", gate_activation="softmax"
        )
    fusions = {label: add_fusion(model, config, activate=False) for label, config in configs.items()}
    gates: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    with torch.no_grad():
        for fuse in fusions.values():  # one set of gate weights for all, so k = N can be checked against dense
            for key, layer in fuse.fusion_layers().items():
                weight, bias = gates.setdefault(
                    key, (torch.randn_like(layer.gate.weight) * 0.05, torch.randn_like(layer.gate.bias))
                )
                layer.gate.weight.copy_(weight)
                layer.gate.bias.copy_(bias)
    return bare.eval(), model.eval(), fusions


def check(
    model: Any, bare: Any, fusions: dict[str, Any], inputs: dict[str, torch.Tensor], args: argparse.Namespace
) -> dict[str, float]:
    """k = N sparse == dense gating (same gate); every timed fusion changes the hidden states."""
    from adapter_fusion.fusion import FusionConfig, add_fusion

    checks: dict[str, float] = {}
    names = tuple(f"a{i}" for i in range(args.adapters))
    full_config = FusionConfig(adapter_names=names, fusion_method="sparse", top_k=args.adapters)
    full = add_fusion(model, full_config, activate=False)
    reference = next(iter(fusions.values()))
    full.load_state_dict(reference.state_dict())
    dense = add_fusion(
        model, FusionConfig(adapter_names=names, fusion_method="gating", gate_activation="softmax"), activate=False
    )
    dense.load_state_dict(reference.state_dict())
    with torch.no_grad():
        base = bare(**inputs).last_hidden_state
        outputs = {}
        for label, fuse in {"sparse k=N": full, "dense": dense, **fusions}.items():
            model.adapters.composition = fuse
            outputs[label] = model.encode(**inputs).last_hidden_state
        model.adapters.composition = None
    torch.testing.assert_close(outputs["sparse k=N"], outputs["dense"], rtol=1e-4, atol=1e-4)
    checks["sparse_k=N_vs_dense_max_abs_diff"] = (outputs["sparse k=N"] - outputs["dense"]).abs().max().item()
    for label in fusions:
        change = (outputs[label] - base).abs().max().item()
        if change == 0.0:
            raise RuntimeError(f"{label} left the hidden states unchanged: it is not active")
        checks[f"{label}_vs_bare_max_abs_diff"] = change
    return checks


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, {platform.machine()}, "
        f"{args.threads} threads; model {Path(args.model).name}; batch {args.batch_size} x {args.seq_len}; "
        f"N = {args.adapters}, k = {args.top_k}; repeats {args.repeats}, warm-up {args.warmup}"
    )
    before = {"load_average": load_average(), "op_latency_ms": op_latency_ms()}
    print(f"before: load average {before['load_average']}, small-op latency {before['op_latency_ms']:.3f} ms")
    bare, model, fusions = build(args)
    generator = torch.Generator().manual_seed(args.seed)
    shape = (args.batch_size, args.seq_len)
    inputs = {
        "input_ids": torch.randint(0, model.config.vocab_size, shape, generator=generator),
        "attention_mask": torch.ones(shape, dtype=torch.long),
    }
    checks = check(model, bare, fusions, {k: v[:2] for k, v in inputs.items()}, args)

    def use(fuse: Any) -> Callable[[], None]:
        return lambda: setattr(model.adapters, "composition", fuse)

    variants: dict[str, Variant] = {BARE: (None, lambda: bare(**inputs))}
    for label, fuse in fusions.items():
        variants[label] = (use(fuse), lambda: model.encode(**inputs))
    with torch.no_grad():
        times = time_interleaved(variants, repeats=args.repeats, warmup=args.warmup)
    model.adapters.composition = None
    after = {"load_average": load_average(), "op_latency_ms": op_latency_ms()}
    print_times(f"forward, N = {args.adapters} adapters (ratio to the bare model)", times, BARE)
    ratios = {label: paired_ratio(times, label, BARE) for label in fusions}
    print("\npaired ratios (median over repeats of fused / bare in the same repeat):")
    for label, ratio in ratios.items():
        goal = f"  goal <= {GOAL}: {'pass' if ratio <= GOAL else 'MISS'}" if label.startswith("sparse") else ""
        print(f"  {label:<24}{ratio:7.3f}{goal}")
    print(f"after: load average {after['load_average']}, small-op latency {after['op_latency_ms']:.3f} ms")
    results = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "times": times,
        "ratios": ratios,
        "checks": checks,
        "machine": {"before": before, "after": after, "torch": torch.__version__},
    }
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
