"""Timing helpers shared by the benchmark scripts: interleaved repeats, paired ratios, a summary table.

The machine these run on may be small and shared, so compared variants are timed interleaved (one call of each
per repeat, in an order that rotates from repeat to repeat) after a warm-up, and each ratio is the median over
repeats of the per-repeat ratio.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

# A variant is a timed call, or (untimed preparation or None, timed call).
Variant = Callable[[], Any] | tuple[Callable[[], None] | None, Callable[[], Any]]


def _split(variant: Variant) -> tuple[Callable[[], None] | None, Callable[[], Any]]:
    return variant if isinstance(variant, tuple) else (None, variant)


def time_interleaved(
    variants: dict[str, Variant], *, repeats: int, warmup: int, steps: int = 1
) -> dict[str, list[float]]:
    """Seconds per call of each variant, one sample per repeat (the mean of ``steps`` calls); variants
    alternate, their order rotating per repeat."""
    names = list(variants)
    calls = {name: _split(variant) for name, variant in variants.items()}
    for _ in range(warmup):
        for name in names:
            prepare, call = calls[name]
            if prepare is not None:
                prepare()
            call()
    times: dict[str, list[float]] = {name: [] for name in names}
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()  # a collection inside one timed call would land on one variant only
    try:
        for repeat in range(repeats):
            shift = repeat % len(names)
            for name in names[shift:] + names[:shift]:
                prepare, call = calls[name]
                if prepare is not None:
                    prepare()
                start = time.perf_counter()
                for _ in range(steps):
                    call()
                times[name].append((time.perf_counter() - start) / steps)
            gc.collect()
    finally:
        if gc_was_enabled:
            gc.enable()
    return times


def paired_ratio(times: dict[str, list[float]], variant: str, baseline: str) -> float:
    """Median over repeats of variant/baseline, each pair measured in the same repeat."""
    return statistics.median(v / b for v, b in zip(times[variant], times[baseline]))


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def op_latency_ms() -> float:
    """Median time of one small parallel op (an add of two [4096, 384] tensors, ~0.1 ms on an idle core).

    On a machine whose cores are shared with other work, each parallel region waits for every thread to be
    scheduled: that waiting (milliseconds per op) then dominates, and it hits many small ops (fusion, adapters)
    far more than large matmuls, so the benchmarks print it before and after a run.
    """
    import torch  # the timing helpers themselves need no torch

    x = torch.randn(4096, 384)
    samples = []
    for _ in range(25):
        start = time.perf_counter()
        torch.add(x, x)
        samples.append(time.perf_counter() - start)
    return 1e3 * statistics.median(samples)


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def print_times(
    title: str, times: dict[str, list[float]], baseline: str, width: int = 36, label: str = "ratio"
) -> None:
    """Median, quartiles and minimum (ms) of every variant, and median / the baseline's median."""
    print(f"\n== {title}")
    print(f"{'variant':<{width}}{'median ms':>11}{'p25 ms':>10}{'p75 ms':>10}{'min ms':>10}{label:>8}")
    base_median = statistics.median(times[baseline])
    for name, values in times.items():
        median = statistics.median(values)
        print(
            f"{name:<{width}}{1e3 * median:>11.1f}{1e3 * quantile(values, 0.25):>10.1f}"
            f"{1e3 * quantile(values, 0.75):>10.1f}{1e3 * min(values):>10.1f}{median / base_median:>8.3f}"
        )
