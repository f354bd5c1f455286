"""The measuring helpers of the benchmark scripts (the scripts themselves print ratios; they are not timed here)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_adapter  # noqa: E402

MIB = 2**20


def test_peak_tensor_bytes_is_the_peak_of_live_tensors():
    def run() -> None:
        first = torch.empty(MIB, dtype=torch.uint8)
        second = torch.empty(2 * MIB, dtype=torch.uint8)  # both live: 3 MiB
        del first, second
        third = torch.empty(MIB, dtype=torch.uint8)  # after the frees: 1 MiB live
        del third

    assert 3 * MIB <= bench_adapter.peak_tensor_bytes(run) < 3 * MIB + 64 * 1024


def test_peak_tensor_bytes_ignores_tensors_from_before_the_run():
    older = torch.empty(4 * MIB, dtype=torch.uint8)

    def run() -> None:
        new = older + 1  # 4 MiB allocated inside
        del new

    assert 4 * MIB <= bench_adapter.peak_tensor_bytes(run) < 4 * MIB + 64 * 1024
