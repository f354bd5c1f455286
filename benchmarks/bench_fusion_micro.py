"""Micro-benchmark: one fused adapter point, fast path vs the AdapterHub-style reference loop.

Times ``FusionLayer.forward`` (packed adapters, folded weights) against the method's registered reference
(every adapter run one by one; for attention, every adapter's key and value computed in ``d`` dims) at
BERT-small-like sizes, and prints the ratio. ``eval`` rows use the memoised weight products (inference);
``eval_nomemo`` rows recompute them every call (what training pays), ``train`` rows add the backward pass.

    python benchmarks/bench_fusion_micro.py                 # d=384, r=24, 4096 tokens, N=1,2,4,8,16, 2 threads
    python benchmarks/bench_fusion_micro.py --methods attention --heads 4
    python benchmarks/bench_fusion_micro.py --tokens 1 --modes eval eval_nomemo   # generation, batch 1
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from adapter_fusion.adapters import BottleneckAdapter
from adapter_fusion.fusion import FUSION_METHODS, FusionConfig, FusionLayer, FusionMethod, FusionPoint

MODES = ("eval", "eval_nomemo", "train")


def timeit(fn: Callable[[], object], repeats: int, min_seconds: float = 0.2) -> float:
    """Median seconds per call over ``repeats`` rounds (each round runs for at least ``min_seconds / repeats``)."""
    fn()  # warm-up
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-6)
    inner = max(1, int(min_seconds / repeats / once))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples)


def callables(
    method: FusionMethod, layer: FusionLayer, adapters: list[BottleneckAdapter], hidden: torch.Tensor, mode: str
):
    """``(fast, reference)`` calls for one mode: eval (memoised products), eval_nomemo, train (with backward)."""
    training = mode == "train"
    layer.train(training)
    for adapter in adapters:
        adapter.train(training)
    if training:
        leaf = hidden.clone().requires_grad_(True)

        def fast() -> object:
            layer(leaf, adapters).hidden.sum().backward()
            return None

        def ref() -> object:
            method.reference(layer, leaf, adapters).hidden.sum().backward()
            return None

        return fast, ref

    def fast_eval() -> object:
        if mode == "eval_nomemo":
            layer._products_cache.clear()
        with torch.no_grad():
            return layer(hidden, adapters)

    def ref_eval() -> object:
        with torch.no_grad():
            return method.reference(layer, hidden, adapters)

    return fast_eval, ref_eval


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--bottleneck", type=int, default=24)
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--adapters", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--methods", nargs="+", default=FUSION_METHODS.names())
    parser.add_argument("--heads", type=int, default=1, help="attention heads of attention fusion")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    d, r, tokens = args.hidden, args.bottleneck, args.tokens
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, d={d}, r={r}, tokens={tokens}")
    print(f"{'method':<10} {'heads':>5} {'mode':<12} {'N':>3} {'reference ms':>13} {'fast ms':>9} {'speed-up':>9}")
    for method_name in args.methods:
        method = FUSION_METHODS.get(method_name)
        for n in args.adapters:
            adapters = [BottleneckAdapter(d, r, initialization="bert") for _ in range(n)]
            options = {"num_attention_heads": args.heads, "attention_dropout": 0.0}  # settings of attention only
            options = {key: value for key, value in options.items() if key in method.config_fields}
            config = FusionConfig(fusion_method=method_name, **options)
            layer = method.build(config, FusionPoint("0_ffn", d, tuple(range(n)), n), {})
            hidden = torch.randn(1, tokens, d)
            for mode in args.modes:
                fast, ref = callables(method, layer, adapters, hidden, mode)
                t_ref = timeit(ref, args.repeats)
                t_fast = timeit(fast, args.repeats)
                print(
                    f"{method_name:<10} {layer.num_heads:>5} {mode:<12} {n:>3} {1e3 * t_ref:>13.2f} "
                    f"{1e3 * t_fast:>9.2f} {t_ref / t_fast:>8.1f}x"
                )


if __name__ == "__main__":
    main()
