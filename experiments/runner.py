"""What the experiment scripts share: the project root, running one CLI command with its wall time, and showing a
command relative to the project root (as the results tables list them)."""

from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ADAPTERS = ROOT / "experiments" / "adapters"
"""Trained adapters and fusions (git-ignored)."""


def shown(cmd: list[str]) -> str:
    """``cmd`` as a shell line with paths relative to the project root."""
    return shlex.join(cmd).replace(str(ROOT) + "/", "")


def run(cmd: list[str], label: str) -> int:
    """Run ``cmd`` from the project root, echoing it and its exit status and wall seconds; returns the status."""
    print("$", shlex.join(cmd), flush=True)
    began = time.monotonic()
    result = subprocess.run(cmd, cwd=ROOT)
    print(f"# {label}: exit {result.returncode} after {time.monotonic() - began:.0f} s", flush=True)
    return result.returncode
